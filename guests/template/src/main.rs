//! A Kestrel guest: prints a greeting with its arguments and the date,
//! then exits with code 0 (the domain ends with it).
#![no_std]
#![no_main]

pvabi::entry_point!(main);

fn main(start: &pvabi::StartInfo) -> i32 {
    // `name=...` on the domain's command line (`cmdline` in dom0's
    // configuration, or the boot module's arguments).
    let name = start.arg("name").unwrap_or("world");
    let times = match start.arg_or("times", 1u32) {
        Ok(n) => n,
        Err(e) => {
            pvabi::println!("my-guest: {e}");
            return 2;
        }
    };
    for _ in 0..times {
        pvabi::println!("my-guest: hello {name} from domain {}", start.domain_id);
    }
    match pvabi::guest::time::utc_now() {
        Some(now) => pvabi::println!("my-guest: it is {now}"),
        None => pvabi::println!("my-guest: the hypervisor knows no wall-clock time"),
    }
    0
}
