"""The BigQuery warehouse: google-cloud-bigquery with ADC, or an emulator endpoint."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import decimal
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.api_core.retry import Retry
from google.auth import exceptions as auth_exc
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from agent.warehouse.base import CountCheck, CountOutcome, WarehouseError, one_value
from agent.warehouse.sql import (
    CountQuery,
    PreparedCheck,
    bind_params,
    build_count_query,
    first_line,
    parse_table,
    prepare_checks,
    query_params,
    read_count_row,
    run_checks,
    run_partition_checks,
    sanitize_labels,
)

__all__ = ["BigQueryWarehouse", "to_query_parameter"]

T = TypeVar("T")

LOGIN_HINT = "run `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS"
NO_CREDENTIALS = f"no Google credentials: {LOGIN_HINT}"
_API_TIMEOUT = 15.0  # the client's own retries of one API call stop after this many seconds
_RETRIABLE = (
    gexc.TooManyRequests,
    gexc.ServiceUnavailable,
    gexc.InternalServerError,
    gexc.BadGateway,
    gexc.GatewayTimeout,
    gexc.DeadlineExceeded,
    gexc.RetryError,
    concurrent.futures.TimeoutError,
    TimeoutError,
)
_QUOTA_REASONS = {"quotaExceeded", "rateLimitExceeded"}


def _scalar_type(value: Any) -> str:
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int):
        return "INT64"
    if isinstance(value, float):
        return "FLOAT64"
    if isinstance(value, decimal.Decimal):
        return "NUMERIC"
    if isinstance(value, dt.datetime):
        return "TIMESTAMP" if value.tzinfo is not None else "DATETIME"
    if isinstance(value, dt.date):
        return "DATE"
    if isinstance(value, dt.time):
        return "TIME"
    if isinstance(value, bytes):
        return "BYTES"
    if value is None or isinstance(value, str):
        return "STRING"
    raise WarehouseError(f"cannot bind a {type(value).__name__} as a BigQuery parameter")


def to_query_parameter(name: str, value: Any) -> Any:
    """Make a typed BigQuery query parameter of a var.

    Args:
        name: the parameter name (`@name` in SQL).
        value: a date, datetime, int, float, bool, str, Decimal, None, or a list of one of these.

    Returns:
        A ScalarQueryParameter (DATE, INT64, FLOAT64, BOOL, STRING, ...) or ArrayQueryParameter.
    """
    if isinstance(value, list | tuple):
        items = list(value)
        kinds = {_scalar_type(v) for v in items if v is not None}
        if len(kinds) > 1:
            raise WarehouseError(f"@{name}: a list parameter needs items of one type")
        return bigquery.ArrayQueryParameter(name, kinds.pop() if kinds else "STRING", items)
    return bigquery.ScalarQueryParameter(name, _scalar_type(value), value)


def _reasons(exc: gexc.GoogleAPICallError) -> set[str]:
    return {str(e.get("reason", "")) for e in (exc.errors or []) if isinstance(e, dict)}


def _message(exc: Exception) -> str:
    if isinstance(exc, gexc.GoogleAPICallError):
        for err in exc.errors or []:
            if isinstance(err, dict) and err.get("message"):
                return first_line(err["message"])
        return first_line(exc.message)
    return first_line(exc)


def _used_params(sql: str, params: Mapping[str, Any]) -> list[str]:
    """The vars a statement names; an unknown `@name` is left for BigQuery to reject."""
    return [n for n in query_params(sql, lenient=True) if n in params]


def _is_retriable(exc: Exception) -> bool:
    if isinstance(exc, _RETRIABLE):
        return True
    return isinstance(exc, gexc.Forbidden) and bool(_reasons(exc) & _QUOTA_REASONS)


def _one_line(exc: Exception) -> str:
    """The user's line for a BigQuery error that is not retried (or no longer)."""
    if isinstance(exc, auth_exc.DefaultCredentialsError):
        return NO_CREDENTIALS
    if isinstance(exc, auth_exc.RefreshError):
        return f"Google credentials could not be refreshed ({_message(exc)}): {LOGIN_HINT}"
    if isinstance(exc, gexc.Forbidden):
        if _reasons(exc) & _QUOTA_REASONS:
            return f"quota or rate limit exceeded: {_message(exc)}"
        return f"permission denied: {_message(exc)}"
    if isinstance(exc, gexc.Unauthorized):
        return f"credentials rejected: {_message(exc)}"
    if isinstance(exc, gexc.NotFound):
        message = _message(exc)
        return message if message.lower().startswith("not found") else f"not found: {message}"
    if isinstance(exc, gexc.BadRequest):
        return f"bad SQL: {_message(exc)}"
    if isinstance(exc, concurrent.futures.TimeoutError | TimeoutError | gexc.DeadlineExceeded):
        return "timed out waiting for BigQuery"
    if isinstance(exc, gexc.TooManyRequests):
        return f"quota or rate limit exceeded: {_message(exc)}"
    if isinstance(exc, gexc.GoogleAPICallError | gexc.RetryError):
        return f"BigQuery error: {_message(exc)}"
    return f"BigQuery error: {type(exc).__name__}: {first_line(exc)}"


class BigQueryWarehouse:
    """Verify and wait queries on BigQuery; one job per `count`, labelled and parameterised.

    Attributes:
        queries_run: query jobs started (dry runs not included).
        last_job: the last query job (its `labels` are what was sent).
    """

    backend = "bigquery"

    def __init__(
        self,
        *,
        project: str | None = None,
        location: str | None = None,
        endpoint: str | None = None,
        client: Any = None,
        tries: int = 3,
        backoff: Callable[[int], float] = lambda attempt: 2.0**attempt,
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = 300.0,
        api_timeout: float = _API_TIMEOUT,
    ) -> None:
        """Describe the warehouse; the client is made on first use.

        Args:
            project: the GCP project jobs run in (from ADC when None; "test-project" with an
                endpoint).
            location: the jobs' location (e.g. "US", "EU").
            endpoint: an emulator URL; anonymous credentials are used then.
            client: a ready `bigquery.Client` (tests).
            tries: attempts for quota, rate-limit, 5xx and timeout errors.
            backoff: seconds to wait after failed attempt n (0-based).
            sleep: the sleep function (injectable for tests).
            timeout: seconds to wait for one query job.
            api_timeout: seconds the client itself retries one API call (429, 5xx) before
                the attempts above count it as failed.
        """
        self.project = project
        self.location = location
        self.endpoint = endpoint
        self.queries_run = 0
        self.last_job: Any = None
        self._client = client
        self._tries = max(1, tries)
        self._backoff = backoff
        self._sleep = sleep
        self._timeout = timeout
        # The client's retry of one API call, kept short: quota and 5xx are retried here.
        self._api_retry = bigquery.DEFAULT_RETRY.with_timeout(api_timeout)
        # The retry of a whole call (a job and the wait for its rows): `tries` attempts, counted
        # and spaced by `_call`'s on_error, so the waits are `backoff`'s, without jitter and
        # through the injectable `sleep`; the Retry's own wait between attempts is therefore
        # zero, and it has no deadline of its own (the attempts bound it).
        self._retry = Retry(predicate=_is_retriable, initial=0.0, maximum=0.0, timeout=None)

    # -- client and calls ---------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The google-cloud-bigquery client, made on first use.

        Returns:
            The client.

        Raises:
            WarehouseError: no credentials.
        """
        if self._client is None:
            try:
                if self.endpoint:
                    self._client = bigquery.Client(
                        project=self.project or "test-project",
                        location=self.location,
                        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                        client_options=ClientOptions(api_endpoint=self.endpoint),
                    )
                else:
                    self._client = bigquery.Client(project=self.project, location=self.location)
            except auth_exc.DefaultCredentialsError:
                raise WarehouseError(NO_CREDENTIALS) from None
            except OSError as exc:  # no project given and none in the environment
                raise WarehouseError(
                    f"no BigQuery project: set `warehouse: {{project: ...}}` ({first_line(exc)})"
                ) from None
            except Exception as exc:  # noqa: BLE001 - every client error becomes one line
                raise WarehouseError(_one_line(exc)) from None
        return self._client

    def _call(self, fn: Callable[[], T]) -> T:
        """Call BigQuery, retrying quota, rate-limit, 5xx and timeouts with backoff.

        Every error leaves as one WarehouseError line; after the last try it says so.
        """
        failures = 0

        def after_failure(exc: Exception) -> None:
            # Called by the Retry with each retriable error, before it tries again.
            nonlocal failures
            failures += 1
            if failures >= self._tries:
                raise WarehouseError(
                    f"{_one_line(exc)} (gave up after {self._tries} tries)"
                ) from None
            self._sleep(self._backoff(failures - 1))

        try:
            return self._retry(fn, on_error=after_failure)()
        except WarehouseError:
            raise
        except Exception as exc:  # noqa: BLE001 - not retriable: one line
            raise WarehouseError(_one_line(exc)) from None

    def _start_job(self, client: Any, sql: str, config: Any) -> Any:
        """Start a query job; `_call` repeats the whole call, so the client's job retry is off."""
        return client.query(
            sql,
            job_config=config,
            location=self.location,
            retry=self._api_retry,
            job_retry=None,
        )

    def _job_config(
        self,
        names: Sequence[str],
        params: Mapping[str, Any],
        labels: Mapping[str, str],
        *,
        dry_run: bool = False,
    ) -> Any:
        config = bigquery.QueryJobConfig(
            query_parameters=[
                to_query_parameter(n, v) for n, v in bind_params(names, params).items()
            ],
            use_legacy_sql=False,
        )
        config.labels = sanitize_labels(labels)
        if dry_run:
            config.dry_run = True
            config.use_query_cache = False
        return config

    def _query(
        self, sql: str, names: Sequence[str], params: Mapping[str, Any], labels: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        config = self._job_config(names, params, labels)
        client = self.client

        def attempt() -> list[dict[str, Any]]:
            self.queries_run += 1
            job = self._start_job(client, sql, config)
            self.last_job = job
            rows = job.result(retry=self._api_retry, timeout=self._timeout)
            return [dict(row.items()) for row in rows]

        return self._call(attempt)

    def _dry_run(self, sql: str, names: Sequence[str], params: Mapping[str, Any]) -> int | None:
        config = self._job_config(names, params, {"runbook_purpose": "plan"}, dry_run=True)
        client = self.client

        def attempt() -> int | None:
            job = self._start_job(client, sql, config)
            total = job.total_bytes_processed
            return None if total is None else int(total)

        return self._call(attempt)

    # -- the protocol -------------------------------------------------------------------------

    def missing_tables(self, tables: Sequence[str]) -> list[str]:
        """Return those of `tables` that do not exist (one metadata call each, no job).

        Args:
            tables: `dataset.table` or `project.dataset.table` names.

        Returns:
            The missing ones, in the given order.

        Raises:
            WarehouseError: an invalid name, no credentials, permission denied.
        """
        for name in tables:
            parse_table(name)
        client = self.client
        missing = []
        for name in tables:

            def exists(name: str = name) -> bool:
                try:
                    client.get_table(name, retry=self._api_retry)
                except gexc.NotFound:
                    return False
                return True

            if not self._call(exists):
                missing.append(name)
        return missing

    def count(
        self,
        checks: Sequence[CountCheck],
        params: Mapping[str, Any],
        labels: Mapping[str, str],
    ) -> list[CountOutcome]:
        """Count every check in one query job; problems land in each outcome's `error`.

        Args:
            checks: the verify step's checks.
            params: vars, bound as typed query parameters (only those the query uses).
            labels: job labels (runbook id, run id, step id), sanitised to BigQuery's rules.

        Returns:
            One outcome per check, in the order of `checks`; never raises for warehouse problems.
        """

        def run(query: CountQuery) -> list[CountOutcome]:
            rows = self._query(query.sql, query.params, params, labels)
            if len(rows) != 1:
                raise WarehouseError(f"the count query returned {len(rows)} rows, not 1")
            return read_count_row(query, rows[0])

        def probe(query: CountQuery) -> None:
            self._dry_run(query.sql, query.params, params)

        return run_checks(checks, params, missing=self.missing_tables, run=run, probe=probe)

    def count_partitions(
        self,
        checks: Sequence[CountCheck],
        params: Sequence[Mapping[str, Any]],
        var: str,
        labels: Mapping[str, str],
    ) -> list[list[CountOutcome]]:
        """Count every check for every partition in one query job.

        Args:
            checks: the verify step's checks (the same for every partition).
            params: each partition's vars, the partition var bound to its value.
            var: the partition var's name.
            labels: job labels, sanitised.

        Returns:
            Per partition, one outcome per check; never raises for warehouse problems.
        """

        def rows(sql: str, bound: dict[str, Any]) -> list[dict[str, Any]]:
            return self._query(sql, list(bound), bound, labels)

        return run_partition_checks(
            checks,
            params,
            var,
            missing=self.missing_tables,
            rows=rows,
            each=lambda p: self.count(checks, p, labels),
        )

    def scalar(self, sql: str, params: Mapping[str, Any], labels: Mapping[str, str]) -> Any:
        """Run a query that yields one value (a wait condition) and return it.

        Args:
            sql: BigQuery SQL.
            params: vars; only those the query names are bound.
            labels: job labels, sanitised.

        Returns:
            The first column of the first row, or None when there is no row.

        Raises:
            WarehouseError: one line for credentials, permission, not found, bad SQL, quota.
        """
        names = _used_params(sql, params)
        rows = self._query(sql, names, params, labels)
        return one_value([list(row.values()) for row in rows])

    def column(self, sql: str, params: Mapping[str, Any], labels: Mapping[str, str]) -> list[Any]:
        """Run a query and return its first column (the values of a runbook's partitions).

        Args:
            sql: BigQuery SQL.
            params: vars; only those the query names are bound.
            labels: job labels, sanitised.

        Returns:
            The first value of every row, in the query's order.

        Raises:
            WarehouseError: one line for credentials, permission, not found, bad SQL, quota.
        """
        names = _used_params(sql, params)
        return [next(iter(row.values()), None) for row in self._query(sql, names, params, labels)]

    def estimate_bytes(self, checks: Sequence[CountCheck], params: Mapping[str, Any]) -> int | None:
        """Dry-run the count query of a verify step.

        Checks on missing tables, and checks whose SQL is bad on its own, are left out (`count`
        names them).

        Args:
            checks: the step's checks.
            params: vars.

        Returns:
            Bytes the query would process; None when no check can run.

        Raises:
            WarehouseError: bad SQL, credentials, permission.
        """
        prepared, errors = prepare_checks(checks, params)
        if errors and not prepared:
            raise WarehouseError(next(iter(errors.values())))
        tables = list(dict.fromkeys(t for check in prepared for t in check.tables))
        gone = set(self.missing_tables(tables))
        runnable = [c for c in prepared if not gone.intersection(c.tables)]
        if not runnable:
            return None
        try:
            return self._dry_run_checks(runnable, params)
        except WarehouseError as exc:
            if len(runnable) == 1:
                raise
            failed = exc
        # Leave out the checks that break the query on their own; `count` names them.
        good = []
        for check in runnable:
            try:
                self._dry_run_checks([check], params)
            except WarehouseError:
                continue
            good.append(check)
        if not good or len(good) == len(runnable):
            raise failed  # the whole query's error; dry-running it again would only repeat it
        return self._dry_run_checks(good, params)

    def _dry_run_checks(
        self, checks: Sequence[PreparedCheck], params: Mapping[str, Any]
    ) -> int | None:
        query = build_count_query(checks)
        return self._dry_run(query.sql, query.params, params)

    def estimate_scalar_bytes(self, sql: str, params: Mapping[str, Any]) -> int | None:
        """Dry-run a wait condition's query.

        Args:
            sql: BigQuery SQL.
            params: vars.

        Returns:
            Bytes the query would process.

        Raises:
            WarehouseError: bad SQL, a missing table, credentials, permission.
        """
        names = _used_params(sql, params)
        return self._dry_run(sql, names, params)

    def close(self) -> None:
        """Close the client's HTTP session."""
        if self._client is not None:
            close = getattr(self._client, "close", None)
            if callable(close):
                close()
            self._client = None
