//! Integration tests live in `tests/`; this library only compiles the README's examples.

#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
