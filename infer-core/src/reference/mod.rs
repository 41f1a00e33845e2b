//! Each kernel function here has the signature of the kernel of the same name in
//! [`crate::kernels`] (less the `work` buffer, which only changes a kernel's speed) and computes
//! the same outputs the plainest way: one scalar loop, the TFLite Micro rule written out step by
//! step, wide (`i64`) arithmetic where it makes the rule obviously right, TFLite's rounding and
//! saturation kept. They are slow on purpose and are not meant for firmware; the kernels are
//! checked against them bit for bit.
//!
//! [`run_model`](crate::reference::run_model) runs a whole loaded [`crate::Model`] with them, the oracle for
//! [`crate::Model::predict_raw`].

mod add;
mod conv2d;
mod dense;
mod fixed_point;
mod global_avg_pool;
mod leaky_relu;
mod model;
mod pool;
mod requant;

pub use add::add_i8;
pub use conv2d::conv2d_i8;
pub use dense::dense_i8;
pub use global_avg_pool::global_avg_pool_i8;
pub use leaky_relu::leaky_relu_i8;
pub use model::{run_model, tensors_len};
pub use pool::{avg_pool2d_i8, max_pool2d_i8};
