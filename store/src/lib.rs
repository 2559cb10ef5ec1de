//! hoist-store: the local content-addressed store, an OCI image layout with
//! hoist's own cache index and snapshots beside it. Knows OCI, knows nothing
//! of Dockerfiles.

pub mod digest;
pub mod archive;
pub mod extract;
pub mod snapshot;
