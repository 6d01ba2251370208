//! Examples of building on homepot's crates; each is an `[[example]]` target of this package
//! (`cargo run -p homepot-examples --example NAME`). The library itself is empty.
#![forbid(unsafe_code)]
