fn send<T: Send>(_: T) {}

fn main() {
    send(leakscope::track!(std::rc::Rc::new(1u8)));
}
