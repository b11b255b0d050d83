//! libtorch on the rpath (and CUDA linking with feature `cuda`): see tau2-build.
fn main() {
    tau2_build::link_libtorch();
}
