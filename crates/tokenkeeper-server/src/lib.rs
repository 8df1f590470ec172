//! reference server
