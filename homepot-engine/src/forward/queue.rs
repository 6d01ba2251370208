//! The forwarding queue: encoded remote write requests in an append-only log of segment files,
//! each record framed as `length (u32 LE) | checksum (8 bytes of SHA-256) | payload`, synced
//! before `append` returns. Each target reads from its own cursor, kept in `cursor-<n>` beside
//! the segments, so a restart resumes where each target stopped. Past the byte cap the oldest
//! segment goes, and the records a target had not read yet are counted as dropped for it. A
//! torn record at the end (power loss during an append) is cut off at open; a record whose
//! checksum fails is skipped with the rest of its segment and counted.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// A segment is closed once it holds this many bytes.
const SEGMENT_BYTES: u64 = 4 * 1024 * 1024;
const HEADER: u64 = 12;

/// Where a target's next record starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Position {
    segment: u64,
    offset: u64,
}

/// What the queue holds and has lost, for one target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TargetCounts {
    /// Bytes not yet sent.
    pub(crate) pending_bytes: u64,
    /// Records dropped unsent: the byte cap, or a corrupt segment.
    pub(crate) dropped: u64,
}

#[derive(Debug)]
struct State {
    /// `(index, length)` of every segment, oldest first; the last is appended to.
    segments: VecDeque<(u64, u64)>,
    file: File,
    cursors: Vec<Position>,
    dropped: Vec<u64>,
}

/// The queue shared by every target.
#[derive(Debug)]
pub(crate) struct ForwardQueue {
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
}

fn segment_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("{index:020}.seg"))
}

fn checksum(payload: &[u8]) -> [u8; 8] {
    let digest = Sha256::digest(payload);
    let mut out = [0u8; 8];
    out.copy_from_slice(&digest[..8]);
    out
}

/// The record at `offset` of `file`: its payload and where the next one starts; `Ok(None)`
/// at the end, or where a record is torn or fails its checksum.
fn read_record(file: &mut File, offset: u64, length: u64) -> io::Result<Option<(Vec<u8>, u64)>> {
    if offset + HEADER > length {
        return Ok(None);
    }
    file.seek(SeekFrom::Start(offset))?;
    let mut header = [0u8; HEADER as usize];
    file.read_exact(&mut header)?;
    let size = u64::from(u32::from_le_bytes([header[0], header[1], header[2], header[3]]));
    if offset + HEADER + size > length {
        return Ok(None);
    }
    let mut payload = vec![0u8; size as usize];
    file.read_exact(&mut payload)?;
    if checksum(&payload) != header[4..12] {
        return Ok(None);
    }
    Ok(Some((payload, offset + HEADER + size)))
}

/// How many whole, valid records `path` holds from `offset`, and where they end.
fn scan(path: &Path, offset: u64) -> io::Result<(u64, u64)> {
    let mut file = File::open(path)?;
    let length = file.metadata()?.len();
    let (mut records, mut at) = (0, offset);
    while let Some((_, next)) = read_record(&mut file, at, length)? {
        records += 1;
        at = next;
    }
    Ok((records, at))
}

impl ForwardQueue {
    /// Opens (or creates) the queue in `dir` for `targets` targets. A target without a cursor
    /// yet starts at the end: it is sent what is accepted from now on.
    pub(crate) fn open(dir: &Path, targets: usize, max_bytes: u64) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let mut indexes: Vec<u64> = fs::read_dir(dir)?
            .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".seg")?.parse().ok())
            .collect();
        indexes.sort_unstable();
        if indexes.is_empty() {
            File::create(segment_path(dir, 0))?;
            indexes.push(0);
        }
        let mut segments = VecDeque::new();
        for &index in &indexes {
            segments.push_back((index, fs::metadata(segment_path(dir, index))?.len()));
        }
        // Power loss may leave half a record at the end of the newest segment: cut it off.
        let (last, length) = *segments.back().expect("one segment at least");
        let (_, valid) = scan(&segment_path(dir, last), 0)?;
        if valid < length {
            OpenOptions::new().write(true).open(segment_path(dir, last))?.set_len(valid)?;
            segments.back_mut().expect("one segment").1 = valid;
        }
        let file = OpenOptions::new().append(true).open(segment_path(dir, last))?;
        let end = Position { segment: last, offset: valid };
        let oldest = Position { segment: indexes[0], offset: 0 };
        let cursors = (0..targets)
            .map(|t| {
                let text = fs::read_to_string(dir.join(format!("cursor-{t}"))).unwrap_or_default();
                let mut parts = text.split_whitespace().map(|p| p.parse::<u64>());
                match (parts.next(), parts.next()) {
                    (Some(Ok(segment)), Some(Ok(offset))) => Position { segment, offset }.max(oldest).min(end),
                    _ => end,
                }
            })
            .collect();
        let state = State { segments, file, cursors, dropped: vec![0; targets] };
        Ok(Self { dir: dir.to_owned(), max_bytes, state: Mutex::new(state) })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends one record and syncs it to disk before returning; then drops the oldest
    /// segments while the queue is over its byte cap.
    pub(crate) fn append(&self, payload: &[u8]) -> io::Result<()> {
        let size = u32::try_from(payload.len()).map_err(|_| io::Error::other("record over 4 GiB"))?;
        let mut state = self.state();
        let (index, length) = *state.segments.back().expect("one segment");
        if length >= SEGMENT_BYTES {
            let next = index + 1;
            state.file = OpenOptions::new().create(true).append(true).open(segment_path(&self.dir, next))?;
            state.segments.push_back((next, 0));
        }
        let mut frame = Vec::with_capacity(payload.len() + HEADER as usize);
        frame.extend_from_slice(&size.to_le_bytes());
        frame.extend_from_slice(&checksum(payload));
        frame.extend_from_slice(payload);
        state.file.write_all(&frame)?;
        state.file.sync_data()?;
        state.segments.back_mut().expect("one segment").1 += frame.len() as u64;
        while state.segments.len() > 1 && state.segments.iter().map(|s| s.1).sum::<u64>() > self.max_bytes {
            let (oldest, _) = state.segments.pop_front().expect("two segments");
            let path = segment_path(&self.dir, oldest);
            let next = Position { segment: state.segments[0].0, offset: 0 };
            for target in 0..state.cursors.len() {
                if state.cursors[target].segment == oldest {
                    let (unread, _) = scan(&path, state.cursors[target].offset)?;
                    state.dropped[target] += unread;
                    state.cursors[target] = next;
                }
            }
            fs::remove_file(path)?;
            tracing::warn!(segment = oldest, "forwarding queue over its byte cap: oldest records dropped");
        }
        Ok(())
    }

    /// The next record for `target` and the position after it; `None` when it has read
    /// everything. A corrupt record skips the rest of its segment, counted as dropped.
    pub(crate) fn next(&self, target: usize) -> io::Result<Option<(Vec<u8>, Position)>> {
        let mut state = self.state();
        loop {
            let at = state.cursors[target];
            let Some(&(_, length)) = state.segments.iter().find(|s| s.0 == at.segment) else {
                state.cursors[target] = Position { segment: state.segments[0].0, offset: 0 };
                continue;
            };
            let mut file = File::open(segment_path(&self.dir, at.segment))?;
            if let Some((payload, next)) = read_record(&mut file, at.offset, length)? {
                return Ok(Some((payload, Position { segment: at.segment, offset: next })));
            }
            let later = state.segments.iter().find(|s| s.0 > at.segment).map(|s| s.0);
            let Some(later) = later else { return Ok(None) };
            if at.offset < length {
                state.dropped[target] += 1;
                tracing::error!(
                    segment = at.segment,
                    offset = at.offset,
                    "corrupt forwarding record: rest of segment skipped"
                );
            }
            state.cursors[target] = Position { segment: later, offset: 0 };
        }
    }

    /// Records that `target` has sent everything before `after`.
    pub(crate) fn advance(&self, target: usize, after: Position) -> io::Result<()> {
        let mut state = self.state();
        state.cursors[target] = state.cursors[target].max(after);
        let at = state.cursors[target];
        let path = self.dir.join(format!("cursor-{target}"));
        let scratch = self.dir.join(format!("cursor-{target}.new"));
        fs::write(&scratch, format!("{} {}\n", at.segment, at.offset))?;
        fs::rename(scratch, path)
    }

    /// What is pending and was dropped for `target`.
    pub(crate) fn counts(&self, target: usize) -> TargetCounts {
        let state = self.state();
        let at = state.cursors[target];
        let pending_bytes = state
            .segments
            .iter()
            .filter(|s| s.0 >= at.segment)
            .map(|s| if s.0 == at.segment { s.1.saturating_sub(at.offset) } else { s.1 })
            .sum();
        TargetCounts { pending_bytes, dropped: state.dropped[target] }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(queue: &ForwardQueue, target: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some((payload, after)) = queue.next(target).unwrap() {
            queue.advance(target, after).unwrap();
            out.push(payload);
        }
        out
    }

    #[test]
    fn records_survive_a_restart_and_each_target_resumes_at_its_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let queue = ForwardQueue::open(dir.path(), 2, u64::MAX).unwrap();
        for n in 0..5u8 {
            queue.append(&[n; 100]).unwrap();
        }
        assert_eq!(drain(&queue, 0).len(), 5);
        let (first, after) = queue.next(1).unwrap().unwrap();
        assert_eq!(first, [0; 100]);
        queue.advance(1, after).unwrap();
        drop(queue);
        let queue = ForwardQueue::open(dir.path(), 2, u64::MAX).unwrap();
        assert!(drain(&queue, 0).is_empty(), "target 0 had sent everything");
        assert_eq!(drain(&queue, 1), (1..5u8).map(|n| vec![n; 100]).collect::<Vec<_>>());
        assert_eq!(queue.counts(1), TargetCounts { pending_bytes: 0, dropped: 0 });
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_a_corrupt_record_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let queue = ForwardQueue::open(dir.path(), 1, u64::MAX).unwrap();
        queue.append(b"whole").unwrap();
        // The target has sent nothing yet: its cursor is at the start.
        queue.advance(0, Position { segment: 0, offset: 0 }).unwrap();
        drop(queue);
        // Half a record, as power loss during an append leaves it.
        let segment = segment_path(dir.path(), 0);
        OpenOptions::new().append(true).open(&segment).unwrap().write_all(&[50, 0, 0, 0, 1, 2]).unwrap();
        let queue = ForwardQueue::open(dir.path(), 1, u64::MAX).unwrap();
        queue.append(b"after").unwrap();
        assert_eq!(drain(&queue, 0), [b"whole".to_vec(), b"after".to_vec()]);

        // A flipped byte inside a record of a closed segment.
        let dir = tempfile::tempdir().unwrap();
        let queue = ForwardQueue::open(dir.path(), 1, u64::MAX).unwrap();
        queue.append(b"first").unwrap();
        queue.append(b"second").unwrap();
        queue.advance(0, Position { segment: 0, offset: 0 }).unwrap();
        drop(queue);
        let mut bytes = fs::read(segment_path(dir.path(), 0)).unwrap();
        bytes[HEADER as usize + 1] ^= 0xff;
        fs::write(segment_path(dir.path(), 0), &bytes).unwrap();
        File::create(segment_path(dir.path(), 1)).unwrap();
        let queue = ForwardQueue::open(dir.path(), 1, u64::MAX).unwrap();
        queue.append(b"third").unwrap();
        assert_eq!(drain(&queue, 0), [b"third".to_vec()]);
        assert_eq!(queue.counts(0).dropped, 1);
    }

    #[test]
    fn past_the_byte_cap_the_oldest_segment_goes_and_unsent_records_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let cap = 3 * SEGMENT_BYTES;
        let queue = ForwardQueue::open(dir.path(), 2, cap).unwrap();
        let record = vec![7u8; 1024 * 1024];
        // Target 0 keeps up; target 1 never sends.
        let mut sent = 0;
        for _ in 0..20 {
            queue.append(&record).unwrap();
            sent += drain(&queue, 0).len();
        }
        assert_eq!(sent, 20);
        assert!(queue.counts(1).pending_bytes <= cap, "{:?}", queue.counts(1));
        let (dropped, pending) = (queue.counts(1).dropped, drain(&queue, 1).len() as u64);
        assert_eq!(dropped + pending, 20, "every record is either still queued or counted as dropped");
        assert!(dropped > 0 && sent > 0);
        assert_eq!(queue.counts(0).dropped, 0);
    }
}
