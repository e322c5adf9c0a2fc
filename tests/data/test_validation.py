import hashlib
import re

import polars as pl
import pytest

from atft_kedro.data.files import read_raw_tables
from atft_kedro.data.schema import NUMERIC, QUOTES_COLUMNS, QUOTES_OPTIONAL, TOPIX_COLUMNS, V2_TO_V1
from atft_kedro.data.validation import RawDataError, validate_market


@pytest.fixture()
def tables(tiny_market):
    return {
        "daily_quotes": tiny_market.daily_quotes.clone(),
        "listed_info": tiny_market.listed_info.clone(),
        "topix": tiny_market.topix.clone(),
    }


def _set(df: pl.DataFrame, row: int, column: str, value) -> pl.DataFrame:
    return df.with_columns(
        pl.when(pl.int_range(pl.len()) == row).then(pl.lit(value)).otherwise(pl.col(column)).alias(column)
    )


def test_clean_tables_pass_unchanged(tables):
    before = tables["daily_quotes"].clone()
    market = validate_market(**tables)
    assert market.quarantine.height == 0
    assert market.daily_quotes.equals(before)
    assert tables["daily_quotes"].equals(before)  # the input frame is not modified


def test_missing_column(tables):
    plain = tables["daily_quotes"].drop("AdjustmentClose", "TurnoverValue")
    with pytest.raises(RawDataError, match=r"daily_quotes: missing column\(s\) \['TurnoverValue', 'AdjustmentClose'\]; the table has .*"
                                           r"if the prices are already adjusted for splits, add AdjustmentFactor = 1 .*TurnoverValue = Close x Volume"):  # fmt: skip
        validate_market(**{**tables, "daily_quotes": plain})
    listed = tables["listed_info"]
    tables["listed_info"] = listed.drop("Sector17Code", "MarketCode")  # a market outside Japan may have neither
    with pytest.raises(RawDataError, match=r"listed_info: missing column\(s\) \['Sector17Code', 'MarketCode'\]; the table has .*"
                                           r"add MarketCode with one value for every stock .*; .*add Sector17Code equal to Sector33Code"):  # fmt: skip
        validate_market(**tables)
    tables["listed_info"] = listed.drop("Sector33Code")
    with pytest.raises(RawDataError, match=r"listed_info: missing column\(s\) \['Sector33Code'\]; the table has \[[^]]*\]$"):  # no hint where none fits
        validate_market(**tables)


def test_wrong_type_numeric(tables):
    tables["daily_quotes"] = tables["daily_quotes"].with_columns(pl.col("Close").cast(pl.String))
    with pytest.raises(RawDataError, match=r"daily_quotes: column 'Close' has type String, expected numeric"):
        validate_market(**tables)


def test_wrong_type_code_is_an_integer(tables):
    tables["listed_info"] = tables["listed_info"].with_columns(pl.col("Code").cast(pl.Int64))
    with pytest.raises(RawDataError, match=r"listed_info: column 'Code' has type Int64, expected text.*leading zeros"):
        validate_market(**tables)


def test_dates_written_as_numbers_are_said_how_to_write(tables):
    tables["topix"] = tables["topix"].with_columns(pl.col("Date").dt.strftime("%Y%m%d").cast(pl.Int64))  # a csv's 20200106
    with pytest.raises(RawDataError, match=r"topix: column 'Date' has type Int64, expected date \(dates written as numbers.*YYYY-MM-DD\)$"):
        validate_market(**tables)


def test_unparseable_date_string(tables):
    q = tables["daily_quotes"].with_columns(pl.col("Date").cast(pl.String))
    tables["daily_quotes"] = _set(q, 7, "Date", "2020-13-45")
    with pytest.raises(RawDataError, match=r"daily_quotes: column 'Date' has values that are not dates .* rows \[7\]"):
        validate_market(**tables)


def test_bad_date_shows_the_values_and_a_hint(tables):
    q = tables["daily_quotes"].with_columns(pl.col("Date").cast(pl.String))
    tables["daily_quotes"] = _set(_set(q, 7, "Date", "2020/01/06"), 9, "Date", "06.01.2020")
    with pytest.raises(RawDataError, match=r"rows \[7, 9\]: '2020/01/06', '06.01.2020' \(write dates as YYYY-MM-DD"):
        validate_market(**tables)


@pytest.mark.parametrize(
    ("text", "shown"),
    [("1,234.5", r"'1,234.5' \(a thousands separator\? write 1234.5"), ("n/a", r"'n/a'$"), ("-", r"'-' \(leave a missing number's cell empty")],
)
def test_text_in_a_number_column_shows_the_values_and_a_hint(tables, text, shown):
    q = tables["daily_quotes"].with_columns(pl.col("Volume").cast(pl.String))
    tables["daily_quotes"] = _set(q, 12, "Volume", text)
    with pytest.raises(RawDataError, match=rf"daily_quotes: column 'Volume' has type String, expected numeric: text that is not a number at rows \[12\]: {shown}"):
        validate_market(**tables)


def test_bad_row_error_shows_the_value(tables):
    tables["daily_quotes"] = _set(tables["daily_quotes"], 10, "Close", -5.0)
    with pytest.raises(RawDataError, match=r"first: non-positive Close at row 10 \(Date \S+, Code \S+; Close = -5.0\)"):
        validate_market(**tables, on_bad_rows="error")
    tables["topix"] = _set(tables["topix"], 3, "Low", 1e9)
    with pytest.raises(RawDataError, match=r"topix: High < Low at rows \[3\] \(High = \S+, Low = 1000000000.0, on \S+\)"):
        validate_market(**tables)


def test_iso_date_strings_are_accepted(tables):
    tables["topix"] = tables["topix"].with_columns(pl.col("Date").cast(pl.String))
    assert validate_market(**tables).topix.schema["Date"] == pl.Date


def test_duplicate_date_code(tables):
    q = tables["daily_quotes"]
    tables["daily_quotes"] = pl.concat([q.head(3), q.slice(1, 1), q.slice(3)])
    with pytest.raises(RawDataError, match=r"daily_quotes: duplicate \('Date', 'Code'\) at rows \[1, 3\]"):
        validate_market(**tables)


def test_dates_out_of_order(tables):
    q = tables["daily_quotes"].sort("Code", "Date")
    first_code = q["Code"][0]
    rows = q.with_row_index("i").filter(pl.col("Code") == first_code)["i"].to_list()
    swapped = q.with_row_index("i").with_columns(
        pl.when(pl.col("i") == rows[4]).then(rows[5]).when(pl.col("i") == rows[5]).then(rows[4]).otherwise(pl.col("i")).alias("i")
    ).sort("i").drop("i")
    tables["daily_quotes"] = swapped
    with pytest.raises(RawDataError, match=rf"daily_quotes: dates out of order \(code {first_code}\).* rows \[{rows[5]}\]"):
        validate_market(**tables)


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [("Close", -5.0, "non-positive Close"), ("AdjustmentLow", 0.0, "non-positive AdjustmentLow"), ("Open", None, "missing Open")],
)
def test_bad_price_rows_error_or_quarantine(tables, column, value, reason):
    tables["daily_quotes"] = _set(tables["daily_quotes"], 10, column, value)
    with pytest.raises(RawDataError, match=rf"daily_quotes: 1 bad row\(s\), first: {reason} at row 10 \(Date .*, Code .*\)"):
        validate_market(**tables, on_bad_rows="error")
    market = validate_market(**tables, on_bad_rows="quarantine")
    assert market.quarantine.select("table", "row", "reason").rows() == [("daily_quotes", 10, reason)]
    assert market.daily_quotes.height == tables["daily_quotes"].height - 1


QUOTE_NUMBERS = [c for c, kind in QUOTES_COLUMNS.items() if kind == NUMERIC] + list(QUOTES_OPTIONAL)
NOT_A_VALUE = [(float("nan"), "NaN"), (float("inf"), "infinite"), (float("-inf"), "infinite"), (None, "missing")]


@pytest.mark.parametrize("column", QUOTE_NUMBERS)
@pytest.mark.parametrize(("value", "kind"), NOT_A_VALUE, ids=["nan", "inf", "-inf", "null"])
def test_nan_inf_and_null_are_set_aside_alike_in_every_numeric_column(tables, column, value, kind):
    q = tables["daily_quotes"]
    if column not in q.columns:  # the optional limit flags: a clean 0 everywhere first
        q = q.with_columns(pl.lit(0.0).alias(column))
    tables["daily_quotes"] = _set(q, 10, column, value)
    market = validate_market(**tables)
    assert market.quarantine.select("row", "reason").rows() == [(10, f"{kind} {column}")]
    assert market.daily_quotes.height == q.height - 1
    with pytest.raises(RawDataError, match=rf"first: {kind} {column} at row 10"):
        validate_market(**tables, on_bad_rows="error")


@pytest.mark.parametrize("column", [c for c, kind in TOPIX_COLUMNS.items() if kind == NUMERIC])
@pytest.mark.parametrize(("value", "kind"), NOT_A_VALUE, ids=["nan", "inf", "-inf", "null"])
def test_nan_inf_and_null_in_the_index_stop_the_run(tables, column, value, kind):
    tables["topix"] = _set(tables["topix"], 3, column, value)
    with pytest.raises(RawDataError, match=rf"topix: {kind} {column} at rows \[3\]"):
        validate_market(**tables)


def test_negative_volume_and_bad_limit_flag(tables):
    q = _set(tables["daily_quotes"].with_columns(pl.lit(0.0).alias("UpperLimit")), 4, "Volume", -1.0)
    tables["daily_quotes"] = _set(q, 6, "UpperLimit", 2.0)
    market = validate_market(**tables)
    assert market.quarantine.select("row", "reason").rows() == [(4, "negative Volume"), (6, "UpperLimit not 0 or 1")]


def test_high_below_low(tables):
    q = tables["daily_quotes"]
    low = q["Low"][20]
    tables["daily_quotes"] = _set(q, 20, "High", low * 0.5)
    market = validate_market(**tables)
    assert market.quarantine.select("row", "reason").rows() == [(20, "High < Low")]
    with pytest.raises(RawDataError, match=r"High < Low at row 20"):
        validate_market(**tables, on_bad_rows="error")


def test_unknown_sector(tables):
    listed = tables["listed_info"]
    gone = listed["Code"][0]
    tables["listed_info"] = listed.slice(1)
    market = validate_market(**tables)
    n_rows = tables["daily_quotes"].filter(pl.col("Code") == gone).height
    assert market.quarantine.height == n_rows
    assert set(market.quarantine["reason"]) == {"unknown sector: code not in listed_info"}
    tables["listed_info"] = _set(listed, 2, "Sector33Code", "n/a")
    with pytest.raises(RawDataError, match=r"listed_info: column 'Sector33Code' has unknown sector codes \['n/a'\] at rows \[2\] \(sector codes are whole numbers"):
        validate_market(**tables)


@pytest.mark.parametrize("table", ["daily_quotes", "listed_info", "topix"])
def test_an_empty_table_is_an_error(tables, table):
    tables[table] = tables[table].head(0)
    with pytest.raises(RawDataError, match=rf"^{table}: the table has no rows$"):
        validate_market(**tables)


def test_codes_listed_info_does_not_share_stop_before_a_panel_of_nothing(tables):
    codes = tables["listed_info"]["Code"]
    tables["listed_info"] = tables["listed_info"].with_columns(pl.col("Code").str.slice(0, 4))  # '72030' written as '7203'
    with pytest.raises(RawDataError, match=rf"daily_quotes: no row is left .*: no code of daily_quotes is in listed_info \(daily_quotes has e.g. '{codes.sort()[0]}', .*"
                                           rf"listed_info '{codes.sort()[0][:4]}', .*'7203' and '72030' differ$"):  # fmt: skip
        validate_market(**tables)


def test_every_row_set_aside_is_an_error_with_the_reasons_counted(tables):
    quotes = tables["daily_quotes"]
    first = quotes["Code"].sort()[0]
    tables["daily_quotes"] = quotes.with_columns(pl.when(pl.col("Code") == first).then(-1.0).otherwise(pl.col("Close")).alias("Close"))
    tables["listed_info"] = tables["listed_info"].filter(pl.col("Code") == first)
    n_first = quotes.filter(pl.col("Code") == first).height
    with pytest.raises(RawDataError, match=rf"every row was set aside \({quotes.height - n_first} unknown sector: code not in listed_info, {n_first} non-positive Close\)$"):
        validate_market(**tables)
    tables["daily_quotes"] = quotes  # the one listed code's rows are good: they are kept, the rest set aside
    assert validate_market(**tables).daily_quotes["Code"].unique().to_list() == [first]


def test_bad_index_row_is_an_error(tables):
    tables["topix"] = _set(tables["topix"], 3, "Close", 0.0)
    with pytest.raises(RawDataError, match=r"topix: non-positive Close at rows \[3\]"):
        validate_market(**tables)


def test_v2_short_names_give_the_same_tables(tables):
    v1_to_v2 = {v: k for k, v in V2_TO_V1.items()}
    as_v2 = {name: df.rename({c: v1_to_v2[c] for c in df.columns if c in v1_to_v2}) for name, df in tables.items()}
    assert "AdjC" in as_v2["daily_quotes"].columns and "S33" in as_v2["listed_info"].columns
    a, b = validate_market(**tables), validate_market(**as_v2)
    assert a.daily_quotes.equals(b.daily_quotes)
    assert a.listed_info.equals(b.listed_info)


def test_stocknet_loads_through_the_files_source(stocknet_dir):
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in stocknet_dir.glob("*.parquet")}
    market = validate_market(**read_raw_tables(stocknet_dir))
    assert market.daily_quotes.height == 108_589
    assert market.daily_quotes["Code"].n_unique() == 88
    assert market.quarantine.height == 0
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in stocknet_dir.glob("*.parquet")} == digests


def test_missing_files_say_where_to_put_them(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no daily_quotes.parquet \(or .csv\) in .*Put daily_quotes, listed_info and topix there"):
        read_raw_tables(tmp_path)


def test_a_file_that_cannot_be_read_is_named_with_a_csvs_ragged_line(tables, tmp_path):
    for name, table in tables.items():
        table.write_parquet(tmp_path / f"{name}.parquet")
    topix = tables["topix"]
    whole = (tmp_path / "topix.parquet").read_bytes()
    (tmp_path / "topix.parquet").write_bytes(whole[: len(whole) // 2])  # a copy cut short
    with pytest.raises(RawDataError, match=rf"^{re.escape(str(tmp_path / 'topix.parquet'))}: cannot be read \(ComputeError: parquet: .*\)$"):
        read_raw_tables(tmp_path)
    (tmp_path / "topix.parquet").unlink()
    lines = topix.write_csv().splitlines()
    lines[5] += ",12,13"  # a row with two fields more than the header
    (tmp_path / "topix.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(RawDataError, match=r"topix.csv: cannot be read \(ComputeError: found more fields than defined in 'Schema'\); line 6 has 7 fields, the header 5$"):
        read_raw_tables(tmp_path)


def test_a_table_in_both_formats_is_read_from_the_parquet_and_said(tables, tmp_path, caplog):
    for name, table in tables.items():
        table.write_parquet(tmp_path / f"{name}.parquet")
    tables["topix"].head(5).write_csv(tmp_path / "topix.csv")
    with caplog.at_level("WARNING", logger="atft_kedro.data.files"):
        read = read_raw_tables(tmp_path)
    assert read["topix"].height == tables["topix"].height
    assert "has both topix.parquet and topix.csv: reading the parquet, the csv is not read" in caplog.text
    assert "daily_quotes" not in caplog.text


def test_an_on_bad_rows_there_is_not_is_refused_with_the_two_there_are():
    """Kedro builds ``SourceConfig`` from ``raw`` before any node, so this stops the run there."""
    from atft_kedro.data.sources import SourceConfig

    with pytest.raises(ValueError, match=r"^raw.on_bad_rows is 'quarantine' \(set bad rows aside\) or 'error' \(stop at the first\), got 'skip'$"):
        SourceConfig(on_bad_rows="skip")
