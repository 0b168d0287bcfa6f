pub mod pair;
pub mod raw;
pub mod repr;
