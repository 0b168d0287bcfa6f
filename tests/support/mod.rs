pub mod pair;
pub mod repr;
