//! Queries through the writer: stored windows merged with the open ones, and patterns.

use super::*;

impl WriterCore {
    /// The windows of one series: what the store holds, merged over instances, with the open
    /// windows (`open`, this instance's, in memory) merged in. Writes nothing.
    ///
    /// An open window whose epoch already has a snapshot in the store (an earlier `Flush`)
    /// replaces this instance's row with `base + open state`; otherwise it is added to the row.
    ///
    /// With [`QueryWindows::any_labels`], each series it reads (every stored or open label
    /// set that holds the labels asked for) is answered so, and the answers merged per start.
    pub(crate) fn query_windows(
        &mut self,
        q: &QueryWindows,
        open: Vec<WindowSnapshot>,
    ) -> Result<Vec<WindowStats>, PipelineError> {
        let store_err = |e| PipelineError::Store(StoreError::from_diesel(e));
        if q.any_labels && !open.is_empty() {
            let mut keys = self.pool.get()?.label_sets(q).map_err(store_err)?;
            keys.extend(open.iter().map(|w| w.key.clone()));
            keys.sort_unstable();
            keys.dedup();
            let mut open = open;
            let mut parts = Vec::new();
            for key in keys {
                let (mine, rest): (Vec<_>, Vec<_>) = open.into_iter().partition(|w| w.key == key);
                open = rest;
                parts.extend(self.query_windows(&q.exactly(&key), mine)?);
            }
            return Ok(WindowStats::merge_by_start(q.key(), parts));
        }
        let mut conn = self.pool.get()?;
        let grid = q.resolution.grid();
        if open.is_empty() {
            return conn.query_windows(q).map_err(store_err);
        }
        // Buckets starting in [from, to) hold the windows starting in [ceil(from), ceil(to)).
        let (from, to) = match grid {
            Some(g) => (g.ceil(q.from_ms), g.ceil(q.to_ms)),
            None => (q.from_ms, q.to_ms),
        };
        let rows = conn.window_rows(&q.key(), from, to).map_err(store_err)?;
        let mut replaced = std::collections::HashSet::new();
        let mut parts: Vec<Part> = Vec::with_capacity(open.len());
        for w in open {
            let mut state = w.state;
            if let Some(base) = self.bases.window_base(&w.key, w.start_ms, w.epoch) {
                replaced.insert(w.start_ms);
                state.merge(base);
            }
            parts.push(Part {
                key: w.key,
                start_ms: w.start_ms,
                state,
            });
        }
        let rows: Vec<_> = rows
            .into_iter()
            .filter(|r| {
                !(r.instance_id == self.instance_id && replaced.contains(&r.window_start_ms))
            })
            .collect();
        for stored in merge_rows(rows) {
            if let Some(state) = stored.state {
                parts.push(Part {
                    key: crate::model::SeriesKey {
                        metric: stored.metric,
                        context: stored.context,
                        labels: stored.labels,
                        kind: state.kind(),
                    },
                    start_ms: stored.window_start_ms,
                    state,
                });
            }
        }
        // In window order, as the store's own merges go, so an answer does not depend on
        // which windows happened to be open (floating-point sums depend on the order).
        parts.sort_by_key(|p| p.start_ms);
        Ok(merge_into_buckets(
            parts,
            grid.unwrap_or(Grid::epoch(self.window_ms)),
        ))
    }

    /// Whether the store answers the writer's call in progress.
    pub(crate) fn watch(&self) -> std::sync::Arc<crate::db::pool::StoreWatch> {
        self.pool.watch()
    }

    pub(crate) fn query_patterns(
        &mut self,
        q: &QueryPatterns,
    ) -> Result<Vec<Pattern>, PipelineError> {
        let mut conn = self.pool.get()?;
        conn.query_patterns(q)
            .map_err(|e| PipelineError::Store(StoreError::from_diesel(e)))
    }

    /// The distinct users a query asks for: stored rows merged with `open`. Writes nothing.
    pub(crate) fn query_users(
        &mut self,
        q: &crate::messages::QueryUsers,
        open: Vec<crate::cores::users::UserWindow>,
    ) -> Result<Vec<crate::users::UserCount>, PipelineError> {
        let mut conn = self.pool.get()?;
        conn.query_users(q, open)
            .map_err(|e| PipelineError::Store(StoreError::from_diesel(e)))
    }
}
