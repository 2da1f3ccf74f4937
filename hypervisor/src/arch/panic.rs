//! The panic handler: one line naming the CPU, the place and the message,
//! then the failure exit.

use core::panic::PanicInfo;

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    x86_64::instructions::interrupts::disable();
    let cpu = super::percpu::cpu_index();
    match info.location() {
        Some(loc) => super::serial::write_fmt_emergency(format_args!(
            "PANIC on cpu{cpu} at {}:{}: {}\n",
            loc.file(),
            loc.line(),
            info.message()
        )),
        None => super::serial::write_fmt_emergency(format_args!(
            "PANIC on cpu{cpu} at unknown location: {}\n",
            info.message()
        )),
    }
    super::exit::exit(false)
}
