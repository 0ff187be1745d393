-- Siren schema version 1. Applied once, in one transaction, by the first node that starts on an
-- empty database; never edited afterwards (a change is a new numbered file).

-- One id space for log entries, alerts and deliveries, as sled's generator is for one node.
CREATE SEQUENCE siren_ids START 1;

CREATE TABLE siren_logs (
    id          bigint PRIMARY KEY,
    integration text   NOT NULL,
    received_ms bigint NOT NULL,
    -- The stored entry JSON (the same document the sled store keeps).
    entry       text   NOT NULL,
    raw         bytea  NOT NULL
);
CREATE INDEX siren_logs_by_integration ON siren_logs (integration, id);
CREATE INDEX siren_logs_by_received ON siren_logs (received_ms);

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
    auto_resolve_ms bigint
);
-- At most one alert still there (not resolved) per integration and third-party id: two nodes
-- that receive the same alert at once cannot both create it.
CREATE UNIQUE INDEX siren_alerts_one_open ON siren_alerts (integration, thirdparty_id)
    WHERE status <> 'resolved';
CREATE INDEX siren_alerts_by_title ON siren_alerts (integration, title, id)
    WHERE status <> 'resolved';
CREATE INDEX siren_alerts_by_integration ON siren_alerts (integration, id);
CREATE INDEX siren_alerts_by_status ON siren_alerts (status, id);
CREATE INDEX siren_alerts_by_both ON siren_alerts (integration, status, id);
CREATE INDEX siren_alerts_deadline ON siren_alerts (auto_resolve_ms)
    WHERE status <> 'resolved' AND auto_resolve_ms IS NOT NULL;

-- Third-party ids an alert answers to: its own, and those of inputs folded into it by title.
CREATE TABLE siren_alert_keys (
    integration   text   NOT NULL,
    thirdparty_id text   NOT NULL,
    alert_id      bigint NOT NULL REFERENCES siren_alerts (id),
    PRIMARY KEY (integration, thirdparty_id, alert_id)
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
