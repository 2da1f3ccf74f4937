pub mod frame;
pub mod gpt;
pub mod memmap;
pub mod size;
