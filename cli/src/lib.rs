//! What the `eventbatch` command needs beside the `eventbatch` library: the `detect`
//! subcommand's CSV code path, the `report` subcommand's HTML page, the `worker` subcommand's arguments, and the Numenta Anomaly
//! Benchmark scorer that measures the detector (used by `tests/nab.rs` and
//! `examples/nab_eval.rs` of this crate).

#![warn(missing_docs)]

pub mod csv_detect;
pub mod nab;
pub mod output;
pub mod report;
pub mod worker;
