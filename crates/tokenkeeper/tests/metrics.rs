//! Metrics tests.
