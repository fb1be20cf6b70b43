//! Empty: this package only holds the loom model tests (see Cargo.toml).
