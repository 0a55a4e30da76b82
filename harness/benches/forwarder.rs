fn main() {
    eprintln!("forwarder bench: not written yet");
}
