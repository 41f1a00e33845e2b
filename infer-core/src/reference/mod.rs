//! Each function here has the signature of the kernel of the same name in
//! [`crate::kernels`] and computes the same outputs the plainest way: one scalar loop, the
//! TFLite Micro rule written out step by step, wide (`i64`) arithmetic where it makes the rule
//! obviously right, TFLite's rounding and saturation kept. They are slow on purpose and are not
//! meant for firmware; the kernels are checked against them bit for bit.

mod add;
mod fixed_point;
mod global_avg_pool;
mod leaky_relu;

pub use add::add_i8;
pub use global_avg_pool::global_avg_pool_i8;
pub use leaky_relu::leaky_relu_i8;
