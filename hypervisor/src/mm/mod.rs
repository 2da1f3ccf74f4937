pub mod frame;
pub mod gpt;
pub mod memmap;
