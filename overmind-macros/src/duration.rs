//! Parsing of human durations such as `"30s"`, `"5m"`, `"1h30m"`, `"250ms"`.

/// A duration in milliseconds, or `None` for `"never"`.
pub(crate) fn parse(text: &str) -> Result<Option<u64>, String> {
    let text = text.trim();
    if text == "never" {
        return Ok(None);
    }
    let bad = || {
        format!(
            "invalid duration {text:?}: expected numbers with units (ms, s, m, h, d), such as \"30s\", \"5m\" or \"1h30m\", or \"never\""
        )
    };
    if text.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let (number, after) = rest.split_at(digits);
        let number: u64 = number.parse().map_err(|_| bad())?;
        let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(unit_len);
        let factor = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        total = number
            .checked_mul(factor)
            .and_then(|ms| total.checked_add(ms))
            .ok_or_else(|| format!("duration {text:?} is too long"))?;
        rest = after;
    }
    if total == 0 {
        return Err(format!(
            "duration {text:?} is zero: an actor would passivate before handling anything; use \"never\" to keep it active"
        ));
    }
    Ok(Some(total))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn parses_units_and_compounds() {
        assert_eq!(parse("250ms"), Ok(Some(250)));
        assert_eq!(parse("30s"), Ok(Some(30_000)));
        assert_eq!(parse("5m"), Ok(Some(300_000)));
        assert_eq!(parse("1h30m"), Ok(Some(5_400_000)));
        assert_eq!(parse("2d"), Ok(Some(172_800_000)));
        assert_eq!(parse("never"), Ok(None));
    }

    #[test]
    fn refuses_nonsense() {
        for bad in [
            "",
            "5",
            "m",
            "5 m",
            "5x",
            "-5s",
            "1.5h",
            "0s",
            "99999999999999999999d",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
