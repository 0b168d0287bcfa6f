pub mod repr;
