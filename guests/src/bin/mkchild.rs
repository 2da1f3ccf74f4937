//! The child of the `mkbench` control domain: built with the runtime's
//! entry-TSC stub, so the TSC at its very first instruction is recorded;
//! it reads the TSC again at the start of `main`, prints both and exits:
//! `mkchild: entry_tsc=E main_tsc=M`.
#![no_std]
#![no_main]

pvabi::entry_point!(main, entry_tsc);

fn main(_: &pvabi::StartInfo) -> i32 {
    let main_tsc = pvabi::guest::time::read_tsc();
    match pvabi::guest::entry_tsc() {
        Some(entry_tsc) => {
            pvabi::println!("mkchild: entry_tsc={entry_tsc} main_tsc={main_tsc}");
            0
        }
        None => {
            pvabi::println!("mkchild: FAILED: no entry TSC");
            1
        }
    }
}
