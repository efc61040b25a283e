//! Raw Cassandra row pages of readings, merged in clustering order and written as NDJSON.
//!
//! A page is the body of a protocol ROWS result after its metadata: `[int rows]` then, per row and column,
//! `[int length][bytes]` (length -1 is null). The Python side keeps that body as bytes and hands it here; the
//! parsing, the merge and the encoding run without the GIL. The output is byte for byte what
//! `readings_service.core.ndjson.encode_rows` (orjson) writes.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

const MS_PER_DAY: i64 = 86_400_000;
// Days from 0001-01-01 to 1970-01-01, and the last day Python's `date` holds (9999-12-31), from the epoch.
const MIN_DAY: i64 = -719_162;
const MAX_DAY: i64 = 2_932_896;
// Bytes per NDJSON line, a little over the usual: reserving it avoids most reallocations.
const LINE_BYTES: usize = 120;

/// One reading of a page: the clustering key, the device id's bytes and the two values (None for null).
#[derive(Clone, Copy)]
struct Row {
    ts: i64,
    order: (u8, u128),
    id: [u8; 16],
    temperature: Option<f64>,
    pressure: Option<f64>,
}

impl Row {
    #[inline]
    fn key(&self) -> (i64, u8, u128) {
        (self.ts, self.order.0, self.order.1)
    }
}

/// Cassandra's `UUIDType` order as (version, 128-bit value): the version nibble first, then for version 1
/// the timestamp (its bytes reordered from time_low, time_mid, time_hi to most significant first), else the
/// most significant half unsigned, then the least significant half unsigned. Same as `core/ordering.py`.
#[inline]
fn uuid_order(id: &[u8; 16]) -> (u8, u128) {
    let value = u128::from_be_bytes(*id);
    let msb = (value >> 64) as u64;
    let lsb = value as u64;
    let version = ((msb >> 12) & 0xF) as u8;
    if version == 1 {
        let time = (msb << 48) | ((msb << 16) & 0xFFFF_0000_0000) | (msb >> 32);
        (1, (u128::from(time) << 64) | u128::from(lsb))
    } else {
        (version, value)
    }
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

#[derive(Debug)]
enum PageError {
    Truncated,
    Cell(&'static str, i32),
    DeviceId,
}

impl PageError {
    fn message(&self) -> String {
        match self {
            PageError::Truncated => "a raw page ends in the middle of a row".to_owned(),
            PageError::Cell(column, length) => format!("a {column} cell of {length} bytes"),
            // The text of uuid.UUID(bytes=...)'s error, as the pure path raises it.
            PageError::DeviceId => "bytes is not a 16-char string".to_owned(),
        }
    }
}

impl<'a> Reader<'a> {
    #[inline]
    fn int(&mut self) -> Result<i32, PageError> {
        let end = self.at + 4;
        let bytes = self.data.get(self.at..end).ok_or(PageError::Truncated)?;
        self.at = end;
        Ok(i32::from_be_bytes(bytes.try_into().unwrap()))
    }

    /// The next cell's bytes, None for null.
    #[inline]
    fn cell(&mut self) -> Result<Option<&'a [u8]>, PageError> {
        let length = self.int()?;
        if length < 0 {
            return Ok(None);
        }
        let end = self.at + length as usize;
        let bytes = self.data.get(self.at..end).ok_or(PageError::Truncated)?;
        self.at = end;
        Ok(Some(bytes))
    }

    #[inline]
    fn bigint(&mut self, column: &'static str) -> Result<i64, PageError> {
        match self.cell()? {
            Some(bytes) if bytes.len() == 8 => Ok(i64::from_be_bytes(bytes.try_into().unwrap())),
            Some(bytes) => Err(PageError::Cell(column, bytes.len() as i32)),
            None => Err(PageError::Cell(column, -1)),
        }
    }

    /// A double cell; null and the empty value both read as None, as the driver decodes them.
    #[inline]
    fn double(&mut self, column: &'static str) -> Result<Option<f64>, PageError> {
        match self.cell()? {
            Some(bytes) if bytes.len() == 8 => Ok(Some(f64::from_be_bytes(bytes.try_into().unwrap()))),
            Some([]) | None => Ok(None),
            Some(bytes) => Err(PageError::Cell(column, bytes.len() as i32)),
        }
    }

    #[inline]
    fn device_id(&mut self) -> Result<[u8; 16], PageError> {
        match self.cell()? {
            Some(bytes) if bytes.len() == 16 => Ok(bytes.try_into().unwrap()),
            Some(_) => Err(PageError::DeviceId),
            None => Err(PageError::DeviceId),
        }
    }
}

/// Rows of a range-scan page: `toUnixTimestamp(ts), uuidAsBlob(device_id), temperature, pressure`.
fn parse_range_page(data: &[u8], rows: &mut Vec<Row>) -> Result<(), PageError> {
    let mut reader = Reader { data, at: 0 };
    let count = reader.int()?.max(0) as usize;
    rows.reserve(count);
    for _ in 0..count {
        let ts = reader.bigint("ts")?;
        let id = reader.device_id()?;
        let temperature = reader.double("temperature")?;
        let pressure = reader.double("pressure")?;
        rows.push(Row { ts, order: uuid_order(&id), id, temperature, pressure });
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------ encoding

const HEX: &[u8; 16] = b"0123456789abcdef";

#[inline]
fn push_uuid(out: &mut Vec<u8>, id: &[u8; 16]) {
    for (index, byte) in id.iter().enumerate() {
        if matches!(index, 4 | 6 | 8 | 10) {
            out.push(b'-');
        }
        out.push(HEX[(byte >> 4) as usize]);
        out.push(HEX[(byte & 0xF) as usize]);
    }
}

/// Year, month, day of a day counted from 1970-01-01 (Howard Hinnant's `civil_from_days`).
#[inline]
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[inline]
fn push_digits(out: &mut Vec<u8>, value: u32, width: usize) {
    let mut buffer = [b'0'; 4];
    let mut rest = value;
    for slot in buffer[..width].iter_mut().rev() {
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.extend_from_slice(&buffer[..width]);
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, as `format_timestamp`; None outside the years 0001 to 9999.
#[inline]
fn push_timestamp(out: &mut Vec<u8>, ts: i64) -> Option<()> {
    let days = ts.div_euclid(MS_PER_DAY);
    if !(MIN_DAY..=MAX_DAY).contains(&days) {
        return None;
    }
    let millis_of_day = ts.rem_euclid(MS_PER_DAY) as u32;
    let (year, month, day) = civil_from_days(days);
    push_digits(out, year as u32, 4);
    out.push(b'-');
    push_digits(out, month, 2);
    out.push(b'-');
    push_digits(out, day, 2);
    out.push(b'T');
    let seconds = millis_of_day / 1000;
    push_digits(out, seconds / 3600, 2);
    out.push(b':');
    push_digits(out, seconds / 60 % 60, 2);
    out.push(b':');
    push_digits(out, seconds % 60, 2);
    out.push(b'.');
    push_digits(out, millis_of_day % 1000, 3);
    out.push(b'Z');
    Some(())
}

/// A float as orjson writes it: ryu's shortest form with a `+` in positive exponents, `null` unless finite.
#[inline]
fn push_float(out: &mut Vec<u8>, value: Option<f64>, buffer: &mut ryu::Buffer) {
    match value {
        Some(number) if number.is_finite() => {
            let text = buffer.format_finite(number).as_bytes();
            match text.iter().position(|&c| c == b'e') {
                Some(at) if text.get(at + 1) != Some(&b'-') => {
                    out.extend_from_slice(&text[..=at]);
                    out.push(b'+');
                    out.extend_from_slice(&text[at + 1..]);
                }
                _ => out.extend_from_slice(text),
            }
        }
        _ => out.extend_from_slice(b"null"),
    }
}

/// One NDJSON line; false (and nothing written) if the timestamp cannot be printed.
#[inline]
fn push_line(out: &mut Vec<u8>, row: &Row, buffer: &mut ryu::Buffer) -> bool {
    let mark = out.len();
    out.extend_from_slice(b"{\"device_id\":\"");
    push_uuid(out, &row.id);
    out.extend_from_slice(b"\",\"ts\":\"");
    if push_timestamp(out, row.ts).is_none() {
        out.truncate(mark);
        return false;
    }
    out.extend_from_slice(b"\",\"temperature\":");
    push_float(out, row.temperature, buffer);
    out.extend_from_slice(b",\"pressure\":");
    push_float(out, row.pressure, buffer);
    out.extend_from_slice(b"}\n");
    true
}

/// Lines of rows in order; stops at the first row whose timestamp cannot be printed. Returns (rows, complete).
fn encode<'a>(rows: impl Iterator<Item = &'a Row>, out: &mut Vec<u8>) -> (usize, bool) {
    let mut buffer = ryu::Buffer::new();
    let mut written = 0;
    for row in rows {
        if !push_line(out, row, &mut buffer) {
            return (written, false);
        }
        written += 1;
    }
    (written, true)
}

// ------------------------------------------------------------------------------------------ the merge

/// The rows one partition has delivered and not yet emitted.
#[derive(Default)]
struct Source {
    rows: Vec<Row>,
    start: usize,
    finished: bool,
}

impl Source {
    fn pending(&self) -> &[Row] {
        &self.rows[self.start..]
    }
}

/// What one cut produced: NDJSON bytes, their line count, whether every row could be printed, and the
/// sources that must deliver their next page before the next cut.
struct Cut {
    data: Vec<u8>,
    rows: usize,
    complete: bool,
    dry: Vec<usize>,
}

fn cut(sources: &mut [Source]) -> Cut {
    let dry: Vec<usize> = (0..sources.len())
        .filter(|&index| !sources[index].finished && sources[index].pending().is_empty())
        .collect();
    if !dry.is_empty() {
        return Cut { data: Vec::new(), rows: 0, complete: true, dry };
    }
    // An open source never delivers a key below the last one it delivered, so every row up to the smallest of
    // those is final; once every source has finished, everything is.
    let watermark = sources
        .iter()
        .filter(|source| !source.finished)
        .map(|source| source.pending().last().expect("open sources are not dry here").key())
        .min();
    let mut taken: Vec<&Row> = Vec::new();
    let mut runs = 0;
    let mut ends = Vec::with_capacity(sources.len());
    for source in sources.iter() {
        let pending = source.pending();
        let end = match watermark {
            Some(mark) => pending.partition_point(|row| row.key() <= mark),
            None => pending.len(),
        };
        if end > 0 {
            runs += 1;
            taken.extend(&pending[..end]);
        }
        ends.push(end);
    }
    if runs > 1 {
        // A stable sort finds the sorted runs and merges them. Keys are unique within a day (a device lives in
        // one bucket), so stability only matters for malformed input.
        taken.sort_by_key(|row| row.key());
    }
    let mut data = Vec::with_capacity(taken.len() * LINE_BYTES);
    let (rows, complete) = encode(taken.into_iter(), &mut data);
    for (source, end) in sources.iter_mut().zip(ends) {
        source.start += end;
        if source.start == source.rows.len() {
            source.rows.clear();
            source.start = 0;
        }
    }
    let dry = (0..sources.len())
        .filter(|&index| !sources[index].finished && sources[index].pending().is_empty())
        .collect();
    Cut { data, rows, complete, dry }
}

/// The partitions of one day, merged page by page in clustering order (ts, then Cassandra's uuid order).
///
/// Feed each source's pages with `push` (and `finish` once it has no more), then `cut`: it emits every row
/// that no open source can still undercut, and names the sources whose next page is needed first.
#[pyclass(module = "readings_native")]
struct DayMerge {
    sources: Vec<Source>,
}

#[pymethods]
impl DayMerge {
    #[new]
    fn new(sources: usize) -> Self {
        DayMerge { sources: (0..sources).map(|_| Source::default()).collect() }
    }

    /// Add one raw page of `source`'s rows (which continue its earlier pages in clustering order).
    fn push(&mut self, py: Python<'_>, source: usize, page: &Bound<'_, PyBytes>) -> PyResult<()> {
        let target = self.source(source)?;
        if target.finished {
            return Err(PyValueError::new_err(format!("source {source} has finished")));
        }
        let data = page.as_bytes();
        let rows = &mut target.rows;
        py.allow_threads(|| parse_range_page(data, rows)).map_err(|error| PyValueError::new_err(error.message()))
    }

    /// Say that `source` has delivered its last page.
    fn finish(&mut self, source: usize) -> PyResult<()> {
        self.source(source)?.finished = true;
        Ok(())
    }

    /// (NDJSON bytes, lines, complete, sources to refill). With sources to refill, nothing is emitted; once
    /// every source has finished and nothing is left, the lines are 0 and no source is named. `complete` is
    /// false if a timestamp outside the years 0001 to 9999 stopped the encoding.
    fn cut<'py>(&mut self, py: Python<'py>) -> (Bound<'py, PyBytes>, usize, bool, Vec<usize>) {
        let sources = &mut self.sources;
        let result = py.allow_threads(|| cut(sources));
        (PyBytes::new(py, &result.data), result.rows, result.complete, result.dry)
    }
}

impl DayMerge {
    fn source(&mut self, index: usize) -> PyResult<&mut Source> {
        let count = self.sources.len();
        self.sources.get_mut(index).ok_or_else(|| PyValueError::new_err(format!("no source {index} of {count}")))
    }
}

// ------------------------------------------------------------------------------------------ one device

/// NDJSON of one device's raw page (`toUnixTimestamp(ts), temperature, pressure`), rows with ts >= `min_ts`.
///
/// Returns (bytes, lines, complete); `complete` as for `DayMerge.cut`.
#[pyfunction]
fn encode_device_page<'py>(
    py: Python<'py>,
    page: &Bound<'py, PyBytes>,
    device_id: [u8; 16],
    min_ts: i64,
) -> PyResult<(Bound<'py, PyBytes>, usize, bool)> {
    let data = page.as_bytes();
    let result = py.allow_threads(|| -> Result<(Vec<u8>, usize, bool), PageError> {
        let mut reader = Reader { data, at: 0 };
        let count = reader.int()?.max(0) as usize;
        let mut rows = Vec::with_capacity(count);
        for _ in 0..count {
            let ts = reader.bigint("ts")?;
            let temperature = reader.double("temperature")?;
            let pressure = reader.double("pressure")?;
            if ts >= min_ts {
                rows.push(Row { ts, order: (0, 0), id: device_id, temperature, pressure });
            }
        }
        let mut out = Vec::with_capacity(rows.len() * LINE_BYTES);
        let (lines, complete) = encode(rows.iter(), &mut out);
        Ok((out, lines, complete))
    });
    let (out, lines, complete) = result.map_err(|error| PyValueError::new_err(error.message()))?;
    Ok((PyBytes::new(py, &out), lines, complete))
}

/// The offset just past the `lines`-th line break of `data` (the length of `data` if it has fewer).
#[pyfunction]
fn line_end(data: &Bound<'_, PyBytes>, lines: usize) -> usize {
    let bytes = data.as_bytes();
    if lines == 0 {
        return 0;
    }
    let mut seen = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        if byte == b'\n' {
            seen += 1;
            if seen == lines {
                return index + 1;
            }
        }
    }
    bytes.len()
}

/// The order key of a uuid's 16 bytes as `(version, value)`, for tests against `core/ordering.py`.
#[pyfunction]
fn uuid_order_key(id: [u8; 16]) -> (u8, u128) {
    uuid_order(&id)
}

#[pymodule]
fn readings_native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    module.add_class::<DayMerge>()?;
    module.add_function(wrap_pyfunction!(encode_device_page, module)?)?;
    module.add_function(wrap_pyfunction!(line_end, module)?)?;
    module.add_function(wrap_pyfunction!(uuid_order_key, module)?)?;
    Ok(())
}
