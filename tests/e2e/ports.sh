# Sourced by the end-to-end scripts (bash).
# free_port VAR: a loopback port that nothing listens on and that this script has not handed out
# before, into VAR. It is taken from outside the kernel's ephemeral range
# (net.ipv4.ip_local_port_range, 32768-60999 by default): a port inside it can become the local
# end of any outgoing connection between the check and the bind, or stay held by one in
# TIME_WAIT, and the bind then fails (seen in CI: Postfix's master, "bind 127.0.0.1 port 49446:
# Address already in use"). Calls the script's `fail` when no port is found.
TAKEN=" "
free_port() {
  local lo=32768 hi=60999 from to p
  read -r lo hi < /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
  if [ "$lo" -gt 11024 ]; then
    from=10000 to=$lo   # below the range: the default case
  elif [ "$hi" -lt 64511 ]; then
    from=$((hi + 1)) to=65536
  else
    from=1024 to=65536  # the range covers nearly everything: take the chance
  fi
  for _ in $(seq 200); do
    p=$((from + (RANDOM * 32768 + RANDOM) % (to - from)))
    [[ $TAKEN == *" $p "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      TAKEN+="$p "
      printf -v "$1" '%s' "$p"
      return
    fi
  done
  fail "no free loopback port"
}
