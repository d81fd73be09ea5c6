//! One module per subcommand.

pub mod apply;
pub mod bench;
pub mod delete;
pub mod describe;
pub mod flows;
pub mod functions;
pub mod get;
pub mod image;
pub mod logs;
pub mod node;
pub mod policy;
pub mod rollout;
pub mod run;
pub mod scale;
pub mod signing;
pub mod vulndb;
