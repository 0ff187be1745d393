-- Siren schema version 1. Applied once, in one transaction, by the first node that starts on an
-- empty database; never edited afterwards (a change is a new numbered file).

-- One id space for log entries, alerts, timeline notes, deliveries and silences, as sled's
-- generator is for one node.
CREATE SEQUENCE siren_ids START 1;

-- Each input's raw bytes, once however many log entries it made (an Alertmanager notification
-- of N alerts is N entries and one raw body); the id is its first entry's.
CREATE TABLE siren_raws (
    id  bigint PRIMARY KEY,
    raw bytea  NOT NULL
);

CREATE TABLE siren_logs (
    id          bigint PRIMARY KEY,
    integration text   NOT NULL,
    received_ms bigint NOT NULL,
    outcome     text,
    -- The alert the entry created, aggregated into, resolved or acknowledged: its timeline.
    alert_id    bigint,
    raw_id      bigint NOT NULL,
    -- What a list shows (the summary JSON: no data), and what the entry's detail adds (its
    -- data JSON, or what rebuilds an e-mail's data from the raw message).
    summary     text   NOT NULL,
    data        text   NOT NULL
);
CREATE INDEX siren_logs_by_integration ON siren_logs (integration, id);
CREATE INDEX siren_logs_by_received ON siren_logs (received_ms);
CREATE INDEX siren_logs_by_integration_received ON siren_logs (integration, received_ms);
CREATE INDEX siren_logs_by_alert ON siren_logs (alert_id, id) WHERE alert_id IS NOT NULL;
CREATE INDEX siren_logs_by_raw ON siren_logs (raw_id);

CREATE TABLE siren_alerts (
    id              bigint PRIMARY KEY,
    integration     text   NOT NULL,
    thirdparty_id   text   NOT NULL,
    title           text   NOT NULL,
    description     text   NOT NULL,
    urgency         text   NOT NULL,
    status          text   NOT NULL,
    dedup_count     bigint NOT NULL,
    created_ms      bigint NOT NULL,
    updated_ms      bigint NOT NULL,
    resolved_ms     bigint,
    resolved_by     text,
    log_id          bigint NOT NULL,
    auto_resolve_ms bigint,
    -- A storm alert's would-be new alerts folded in, and those of them not resolved yet.
    storm_members   bigint,
    storm_open      bigint
);
-- At most one alert open or acknowledged (still there and not dropped) per integration and
-- third-party id: two nodes that receive the same alert at once cannot both create it. (A
-- dropped alert takes in only dropped repeats, so an alert that pages may follow it.)
CREATE UNIQUE INDEX siren_alerts_one_open ON siren_alerts (integration, thirdparty_id)
    WHERE status NOT IN ('resolved', 'dropped');
CREATE INDEX siren_alerts_by_integration ON siren_alerts (integration, id);
CREATE INDEX siren_alerts_by_status ON siren_alerts (status, id);
CREATE INDEX siren_alerts_by_both ON siren_alerts (integration, status, id);
CREATE INDEX siren_alerts_deadline ON siren_alerts (auto_resolve_ms)
    WHERE status <> 'resolved' AND auto_resolve_ms IS NOT NULL;

-- What alerts are found by within their integration (sled's T and H keys): kind 't', a
-- third-party id (an alert's own, its further ids, those of inputs folded into it); kind 'h',
-- the title window's key. Keys are found by their hash (a title may be longer than an index
-- entry can be) and compared in full.
CREATE TABLE siren_alert_keys (
    kind        "char" NOT NULL,
    integration text   NOT NULL,
    key_hash    bigint NOT NULL,
    key         text   NOT NULL,
    alert_id    bigint NOT NULL,
    PRIMARY KEY (kind, integration, key_hash, alert_id)
);

-- An alert's timeline beyond its log entries, as sled's K notes: kind 'c', a user's or auto
-- resolve's change (a fresh id); kind 'd', an outbox delivery (the delivery's id).
CREATE TABLE siren_notes (
    alert_id bigint NOT NULL,
    id       bigint NOT NULL,
    kind     "char" NOT NULL,
    note     text   NOT NULL,
    PRIMARY KEY (alert_id, id)
);

CREATE TABLE siren_deliveries (
    id          bigint  PRIMARY KEY,
    destination text    NOT NULL,
    alert_id    bigint  NOT NULL,
    -- The delivery state JSON (attempts, next attempt, last error).
    state       text    NOT NULL,
    payload     bytea   NOT NULL,
    dead        boolean NOT NULL DEFAULT false,
    dead_ms     bigint,
    -- The node that is attempting it, until when; an expired claim may be taken by any node.
    claimed_by  text,
    claim_until timestamptz
);
CREATE INDEX siren_deliveries_pending ON siren_deliveries (id) WHERE NOT dead;
CREATE INDEX siren_deliveries_dead ON siren_deliveries (id) WHERE dead;
CREATE INDEX siren_deliveries_by_alert ON siren_deliveries (destination, alert_id, id) WHERE NOT dead;

-- Silences (the record JSON); every node reloads those not ended every few seconds.
CREATE TABLE siren_silences (
    id      bigint PRIMARY KEY,
    ends_ms bigint NOT NULL,
    record  text   NOT NULL
);
CREATE INDEX siren_silences_in_force ON siren_silences (ends_ms);

-- Each integration's storm window (the times of its last would-be new alerts), shared by every
-- node so that the storm rate is the cluster's.
CREATE TABLE siren_storms (
    integration text     PRIMARY KEY,
    times       bigint[] NOT NULL
);
