//! TODO(owner): crate docs.
