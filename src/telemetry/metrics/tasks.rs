//! Background tasks that ended before shutdown (`atlantis_lock_proxy_background_task_exits`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::Metrics;

/// A label set with one `task` label: the fixed name of a background task.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct TaskLabel {
    pub task: &'static str,
}

/// The counter family.
pub(super) struct Tasks {
    exits: Family<TaskLabel, Counter>,
}

impl Tasks {
    pub(super) fn register(r: &mut Registry) -> Self {
        let t = Self {
            exits: Family::default(),
        };
        r.register(
            "atlantis_lock_proxy_background_task_exits",
            "Background tasks (maintenance, reconciler, dispatcher, ...) that ended before shutdown, by task",
            t.exits.clone(),
        );
        t
    }
}

impl Metrics {
    /// Counts a background task that ended before shutdown.
    pub fn background_task_exit(&self, task: &'static str) {
        self.tasks.exits.get_or_create(&TaskLabel { task }).inc();
    }
}
