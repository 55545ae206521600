//! Reading chat input one line at a time without ever holding an unbounded line.

use std::io::BufRead;

/// Longest chat line read, in bytes: far more than any context holds (a 128k-token context is about
/// 512 KB of text); a longer line is skipped without being kept in memory.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// One line of chat input.
#[derive(Debug, PartialEq, Eq)]
pub enum InputLine {
    Text(String),
    /// Not UTF-8: the first bad byte's offset.
    InvalidUtf8 {
        offset: usize,
    },
    /// Longer than the limit; only its length was kept.
    TooLong {
        bytes: usize,
    },
}

/// Reads one line (without its `\n` / `\r\n`), never holding more than `max_bytes` of it;
/// `None` at end of input.
pub fn read_line_capped(reader: &mut impl BufRead, max_bytes: usize) -> std::io::Result<Option<InputLine>> {
    let mut line = Vec::new();
    let mut total = 0usize;
    let mut too_long = false;
    loop {
        let buf = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            if total == 0 {
                return Ok(None);
            }
            break;
        }
        let newline = buf.iter().position(|&b| b == b'\n');
        let take = newline.map_or(buf.len(), |i| i + 1);
        if !too_long {
            if line.len() + take > max_bytes + 2 {
                too_long = true;
                line = Vec::new();
            } else {
                line.extend_from_slice(&buf[..take]);
            }
        }
        total += take;
        reader.consume(take);
        if newline.is_some() {
            break;
        }
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    if too_long || line.len() > max_bytes {
        return Ok(Some(InputLine::TooLong { bytes: total }));
    }
    Ok(Some(match String::from_utf8(line) {
        Ok(s) => InputLine::Text(s),
        Err(e) => InputLine::InvalidUtf8 { offset: e.utf8_error().valid_up_to() },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<InputLine> {
        // A tiny buffer makes lines span several fills, as a pipe does.
        let mut r = std::io::BufReader::with_capacity(3, input);
        std::iter::from_fn(|| read_line_capped(&mut r, max).unwrap()).collect()
    }

    #[test]
    fn capped_lines_report_bad_utf8_and_length_and_keep_going() {
        let got = lines(b"hello\r\nbad \xff byte\n0123456789abc\nlast", 10);
        assert_eq!(
            got,
            vec![InputLine::Text("hello".into()), InputLine::InvalidUtf8 { offset: 4 }, InputLine::TooLong { bytes: 14 }, InputLine::Text("last".into()),]
        );
        assert!(lines(b"", 10).is_empty());
        assert_eq!(lines(b"\n", 10), vec![InputLine::Text(String::new())]);
    }
}
