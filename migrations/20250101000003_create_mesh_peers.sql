-- Peers a node knows: where they listen, what state they are in, and bans with their expiry.
-- One row per id and one per address, the two indexes of the peer store.
CREATE TABLE IF NOT EXISTS mesh_peers (
    id UUID PRIMARY KEY,
    address INET NOT NULL,
    port INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
    status TEXT NOT NULL DEFAULT 'unknown'
        CHECK (status IN ('valid', 'inaccessible', 'banned', 'unknown')),
    status_changed_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    -- A `BanReason` as JSON, e.g. {"Misbehaviour": {"score": 120}}; set only while banned.
    ban_reason JSONB,
    banned_until TIMESTAMPTZ,
    public_key BYTEA CHECK (octet_length(public_key) = 32),
    last_seen TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    CONSTRAINT mesh_peers_address_port_key UNIQUE (address, port),
    CONSTRAINT mesh_peers_ban_consistent CHECK ((status = 'banned') = (ban_reason IS NOT NULL))
);

CREATE INDEX IF NOT EXISTS idx_mesh_peers_status
    ON mesh_peers (status);
