//! The NATS bridge against a real NATS server (`MESH_TEST_NATS_URL`, JetStream on) with whole
//! nodes on the in-memory transport, in one test binary: bridged prices verify at the far end of
//! a mesh (`mesh`), an outage never holds up gossip and publishing resumes (`outage`), a stream
//! hands late subscribers the newest price per asset (`jetstream`), and a node starts with NATS
//! down (`startup`, no server needed).

mod jetstream;
mod mesh;
mod outage;
mod startup;
mod support;
