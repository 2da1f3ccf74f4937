pub mod frame;
pub mod memmap;
