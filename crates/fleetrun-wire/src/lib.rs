//! Wire formats, and nothing else: the AWS SSM awsJson1_1 shapes fleetrun serves ([`ssm`]), the AWS
//! error body ([`error`]), request-constraint checks that produce AWS `ValidationException` messages
//! ([`validate`]), ListCommands bodies spliced from pre-encoded parts ([`listing`]), and the fleetrun
//! agent protocol ([`agent`]). No I/O.

pub mod admin;
pub mod agent;
pub mod cloudwatch;
pub mod documents;
pub mod error;
pub mod listing;
pub mod logs;
pub mod resource_groups;
pub mod ssm;
pub mod tags;
pub mod validate;
