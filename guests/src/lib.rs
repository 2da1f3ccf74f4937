//! Example and test guests for Kestrel. Each binary in `src/bin` is one
//! guest, written only against `pvabi`; the boot tests run them.
#![no_std]
