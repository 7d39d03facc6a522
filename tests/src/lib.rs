//! Shared fixtures for Starling's integration tests.
