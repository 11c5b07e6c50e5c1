// The SQL migrations are embedded at compile time (refinery's `embed_migrations!`): rebuild
// when one is added or changed, or a new migration would be missing from the binary.
fn main() {
    println!("cargo:rerun-if-changed=../schemas/sql");
}
