//! tokenkeeper
