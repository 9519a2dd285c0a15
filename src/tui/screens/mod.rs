//! One module per wizard screen. Each owns its render-ready state, the small state operations its
//! keys need, and `impl Widget for &XxxState`; the moves between screens live in `app.rs`.

pub mod connect;
pub mod done;
pub mod preflight;
pub mod resume;
pub mod review;
pub mod run;
pub mod tables;
