//! [`DurableQueue`]: records in an append-only log of segment files, each framed as
//! `length (u32 LE) | checksum (8 bytes of SHA-256) | payload`, synced before `append`
//! returns. What remote write forwarding and `homepot agent` keep until it is sent.
//!
//! Each reader (a forwarding target) has its own cursor, kept in `cursor-<n>` beside the
//! segments, so a restart resumes where each stopped; segments every reader is past are
//! deleted. Past the byte cap the oldest segment goes, and the records a reader had not read
//! yet are counted as dropped for it. A torn record at the end (power loss during an append)
//! is cut off at open; a record whose checksum fails is skipped with the rest of its segment
//! and counted.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// A segment is closed once it holds this many bytes, or an eighth of the byte cap when that
/// is less (at least 4 KiB): the cap drops data in steps of a segment.
const SEGMENT_BYTES: u64 = 4 * 1024 * 1024;
const MIN_SEGMENT_BYTES: u64 = 4 * 1024;
const HEADER: u64 = 12;

/// Where a target's next record starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    segment: u64,
    offset: u64,
}

/// What the queue holds and has lost, for one reader.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReaderCounts {
    /// Bytes not yet read.
    pub pending_bytes: u64,
    /// Records dropped unread since the queue was opened: the byte cap, or a corrupt segment.
    pub dropped: u64,
}

/// A look at a queue another process may be writing: nothing is changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inspection {
    /// Whole records not yet read by reader 0.
    pub pending_records: u64,
    /// Their bytes, framing included.
    pub pending_bytes: u64,
    /// The oldest of them.
    pub oldest: Option<Vec<u8>>,
}

#[derive(Debug)]
struct State {
    /// `(index, length)` of every segment, oldest first; the last is appended to.
    segments: VecDeque<(u64, u64)>,
    file: File,
    cursors: Vec<Position>,
    dropped: Vec<u64>,
}

/// A durable queue with one cursor per reader.
#[derive(Debug)]
pub struct DurableQueue {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
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

impl DurableQueue {
    /// Opens (or creates) the queue in `dir` for `targets` readers. A reader without a cursor
    /// yet starts at the end: it reads what is appended from now on.
    ///
    /// # Errors
    /// The directory or its files cannot be read, created or repaired.
    pub fn open(dir: &Path, targets: usize, max_bytes: u64) -> io::Result<Self> {
        Self::open_with(dir, targets, max_bytes, false)
    }

    /// Opens (or creates) the queue in `dir` for one reader that reads every record: without
    /// a cursor yet (a crash before its first read, say), it starts at the oldest.
    ///
    /// # Errors
    /// As [`DurableQueue::open`].
    pub fn open_single(dir: &Path, max_bytes: u64) -> io::Result<Self> {
        Self::open_with(dir, 1, max_bytes, true)
    }

    fn open_with(dir: &Path, targets: usize, max_bytes: u64, from_oldest: bool) -> io::Result<Self> {
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
        let unread = if from_oldest { oldest } else { end };
        let cursors = (0..targets).map(|t| read_cursor(dir, t).map_or(unread, |at| at.max(oldest).min(end))).collect();
        let state = State { segments, file, cursors, dropped: vec![0; targets] };
        let segment_bytes = (max_bytes / 8).clamp(MIN_SEGMENT_BYTES, SEGMENT_BYTES);
        Ok(Self { dir: dir.to_owned(), max_bytes, segment_bytes, state: Mutex::new(state) })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends one record and syncs it to disk before returning; then drops the oldest
    /// segments while the queue is over its byte cap.
    ///
    /// # Errors
    /// The record could not be written and synced (it is then not in the queue).
    pub fn append(&self, payload: &[u8]) -> io::Result<()> {
        let size = u32::try_from(payload.len()).map_err(|_| io::Error::other("record over 4 GiB"))?;
        let mut state = self.state();
        let (index, length) = *state.segments.back().expect("one segment");
        if length >= self.segment_bytes {
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
            tracing::warn!(segment = oldest, dir = %self.dir.display(), "queue over its byte cap: oldest records dropped");
        }
        Ok(())
    }

    /// The next record for `target` and the position after it; `None` when it has read
    /// everything. A corrupt record skips the rest of its segment, counted as dropped.
    ///
    /// # Errors
    /// A segment cannot be read.
    pub fn next(&self, target: usize) -> io::Result<Option<(Vec<u8>, Position)>> {
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
                    dir = %self.dir.display(),
                    "corrupt queue record: rest of segment skipped"
                );
            }
            state.cursors[target] = Position { segment: later, offset: 0 };
        }
    }

    /// Records that `target` is done with everything before `after`, durably; then deletes
    /// the segments every reader is past.
    ///
    /// # Errors
    /// The cursor cannot be written.
    pub fn advance(&self, target: usize, after: Position) -> io::Result<()> {
        let mut state = self.state();
        state.cursors[target] = state.cursors[target].max(after);
        let at = state.cursors[target];
        let path = self.dir.join(format!("cursor-{target}"));
        let scratch = self.dir.join(format!("cursor-{target}.new"));
        let mut file = File::create(&scratch)?;
        file.write_all(format!("{} {}\n", at.segment, at.offset).as_bytes())?;
        file.sync_data()?;
        fs::rename(scratch, path)?;
        let slowest = state.cursors.iter().map(|c| c.segment).min().unwrap_or(0);
        while state.segments.len() > 1 && state.segments[0].0 < slowest {
            let (done, _) = state.segments.pop_front().expect("two segments");
            fs::remove_file(segment_path(&self.dir, done))?;
        }
        Ok(())
    }

    /// What is pending and was dropped for `target`.
    pub fn counts(&self, target: usize) -> ReaderCounts {
        let state = self.state();
        let at = state.cursors[target];
        let pending_bytes = state
            .segments
            .iter()
            .filter(|s| s.0 >= at.segment)
            .map(|s| if s.0 == at.segment { s.1.saturating_sub(at.offset) } else { s.1 })
            .sum();
        ReaderCounts { pending_bytes, dropped: state.dropped[target] }
    }

    /// Looks at the queue in `dir` for reader 0 without changing anything, as a status
    /// command does while the queue's owner runs: a record being appended is not counted.
    ///
    /// # Errors
    /// A segment cannot be read.
    pub fn inspect(dir: &Path) -> io::Result<Inspection> {
        let mut indexes: Vec<u64> = match fs::read_dir(dir) {
            Ok(entries) => {
                entries.filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".seg")?.parse().ok()).collect()
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Inspection::default()),
            Err(error) => return Err(error),
        };
        indexes.sort_unstable();
        let Some(&first) = indexes.first() else { return Ok(Inspection::default()) };
        let start = read_cursor(dir, 0).unwrap_or(Position { segment: first, offset: 0 });
        let mut inspection = Inspection::default();
        for index in indexes.into_iter().filter(|&i| i >= start.segment) {
            let mut file = File::open(segment_path(dir, index))?;
            let length = file.metadata()?.len();
            let mut at = if index == start.segment { start.offset } else { 0 };
            while let Some((payload, next)) = read_record(&mut file, at, length)? {
                inspection.pending_records += 1;
                inspection.pending_bytes += next - at;
                inspection.oldest.get_or_insert(payload);
                at = next;
            }
        }
        Ok(inspection)
    }
}

/// Reader `target`'s stored cursor, if it has one.
fn read_cursor(dir: &Path, target: usize) -> Option<Position> {
    let text = fs::read_to_string(dir.join(format!("cursor-{target}"))).ok()?;
    let mut parts = text.split_whitespace().map(|p| p.parse::<u64>());
    match (parts.next(), parts.next()) {
        (Some(Ok(segment)), Some(Ok(offset))) => Some(Position { segment, offset }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(queue: &DurableQueue, target: usize) -> Vec<Vec<u8>> {
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
        let queue = DurableQueue::open(dir.path(), 2, u64::MAX).unwrap();
        for n in 0..5u8 {
            queue.append(&[n; 100]).unwrap();
        }
        assert_eq!(drain(&queue, 0).len(), 5);
        let (first, after) = queue.next(1).unwrap().unwrap();
        assert_eq!(first, [0; 100]);
        queue.advance(1, after).unwrap();
        drop(queue);
        let queue = DurableQueue::open(dir.path(), 2, u64::MAX).unwrap();
        assert!(drain(&queue, 0).is_empty(), "target 0 had sent everything");
        assert_eq!(drain(&queue, 1), (1..5u8).map(|n| vec![n; 100]).collect::<Vec<_>>());
        assert_eq!(queue.counts(1), ReaderCounts { pending_bytes: 0, dropped: 0 });
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_a_corrupt_record_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let queue = DurableQueue::open(dir.path(), 1, u64::MAX).unwrap();
        queue.append(b"whole").unwrap();
        // The target has sent nothing yet: its cursor is at the start.
        queue.advance(0, Position { segment: 0, offset: 0 }).unwrap();
        drop(queue);
        // Half a record, as power loss during an append leaves it.
        let segment = segment_path(dir.path(), 0);
        OpenOptions::new().append(true).open(&segment).unwrap().write_all(&[50, 0, 0, 0, 1, 2]).unwrap();
        let queue = DurableQueue::open(dir.path(), 1, u64::MAX).unwrap();
        queue.append(b"after").unwrap();
        assert_eq!(drain(&queue, 0), [b"whole".to_vec(), b"after".to_vec()]);

        // A flipped byte inside a record of a closed segment.
        let dir = tempfile::tempdir().unwrap();
        let queue = DurableQueue::open(dir.path(), 1, u64::MAX).unwrap();
        queue.append(b"first").unwrap();
        queue.append(b"second").unwrap();
        queue.advance(0, Position { segment: 0, offset: 0 }).unwrap();
        drop(queue);
        let mut bytes = fs::read(segment_path(dir.path(), 0)).unwrap();
        bytes[HEADER as usize + 1] ^= 0xff;
        fs::write(segment_path(dir.path(), 0), &bytes).unwrap();
        File::create(segment_path(dir.path(), 1)).unwrap();
        let queue = DurableQueue::open(dir.path(), 1, u64::MAX).unwrap();
        queue.append(b"third").unwrap();
        assert_eq!(drain(&queue, 0), [b"third".to_vec()]);
        assert_eq!(queue.counts(0).dropped, 1);
    }

    #[test]
    fn past_the_byte_cap_the_oldest_segment_goes_and_unsent_records_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let cap = 3 * SEGMENT_BYTES;
        let queue = DurableQueue::open(dir.path(), 2, cap).unwrap();
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

    #[test]
    fn segments_every_reader_is_past_are_deleted_and_inspection_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let queue = DurableQueue::open(dir.path(), 1, u64::MAX).unwrap();
        queue.advance(0, Position { segment: 0, offset: 0 }).unwrap();
        let record = vec![1u8; 1024 * 1024];
        for _ in 0..9 {
            queue.append(&record).unwrap();
        }
        let segments = || {
            fs::read_dir(dir.path())
                .unwrap()
                .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "seg"))
                .count()
        };
        assert_eq!(segments(), 3, "4 MiB segments");
        let seen = DurableQueue::inspect(dir.path()).unwrap();
        assert_eq!((seen.pending_records, seen.oldest.as_deref()), (9, Some(&record[..])));
        assert_eq!(DurableQueue::inspect(dir.path()).unwrap(), seen, "inspecting changes nothing");
        assert_eq!(drain(&queue, 0).len(), 9);
        assert_eq!(segments(), 1, "read segments are gone; the one appended to stays");
        assert_eq!(DurableQueue::inspect(dir.path()).unwrap(), Inspection::default());
        queue.append(b"more").unwrap();
        assert_eq!(DurableQueue::inspect(dir.path()).unwrap().oldest.as_deref(), Some(&b"more"[..]));
    }
}
