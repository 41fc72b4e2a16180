"""mitmproxy addon that filters by a list of compiled regexes, the way a
regex-scanning filter does: for every request it tries each regex in list
order against the whole host, and the first match decides.

It is the baseline of the proxy benchmark in bench/load/run.sh, not a
filter to deploy. Load it with

    mitmdump -s mitm_regex_addon.py --set regex_list=FILE [--set regex_list_format=csv|domains]

- ``csv``: ``regex,category[,action]`` rows as in webwarden's blacklist.csv.
  A first matching row with action ``allow`` lets the request through.
- ``domains``: one domain per line, turned into the regex ``.*domain\\.tld``.

Without ``regex_list_format`` the format is ``csv`` for a ``.csv`` file and
``domains`` for any other file. Blank lines and ``#`` comments are skipped in
both formats. Rows whose regex does not compile are skipped and counted.
"""

import csv
import logging
import re
import time
from typing import NamedTuple, Optional

from mitmproxy import ctx, http


class Rule(NamedTuple):
    pattern: re.Pattern
    category: str
    block: bool


def domain_to_regex(domain: str) -> str:
    """Return the ``.*domain\\.tld`` regex for a domain-list row."""
    return ".*" + re.escape(domain)


def read_rules(path: str, list_format: str) -> tuple[list[Rule], int]:
    """Compile the rules of a list file in file order.

    Returns the rules and the number of rows skipped as invalid.
    """
    rules: list[Rule] = []
    invalid = 0
    with open(path, encoding="utf-8-sig", newline="") as file:
        if list_format == "csv":
            rows = csv.reader(
                line for line in file if line.strip() and not line.lstrip().startswith("#")
            )
        else:
            rows = (
                [line.strip()]
                for line in file
                if line.strip() and not line.lstrip().startswith("#")
            )
        for index, row in enumerate(rows):
            if not row or not row[0].strip():
                continue
            if list_format == "csv":
                source = row[0].strip()
                category = row[1].strip() if len(row) > 1 else "Uncategorized"
                action = row[2].strip().lower() if len(row) > 2 else "block"
                # A first row of `regex,category` is a header, as in webwarden.
                if index == 0 and source.lower() == "regex":
                    continue
            else:
                source = domain_to_regex(row[0].lower())
                category = "Uncategorized"
                action = "block"
            try:
                pattern = re.compile(source, re.IGNORECASE)
            except re.error:
                invalid += 1
                continue
            rules.append(Rule(pattern, category, action != "allow"))
    return rules, invalid


def first_match(rules: list[Rule], host: str) -> Optional[Rule]:
    """Return the first rule whose regex matches the whole host."""
    for rule in rules:
        if rule.pattern.fullmatch(host):
            return rule
    return None


class RegexFilter:
    def __init__(self) -> None:
        self.rules: list[Rule] = []

    def load(self, loader) -> None:
        loader.add_option(
            "regex_list", str, "", "List file of the regex filter (csv or domains)."
        )
        loader.add_option(
            "regex_list_format",
            str,
            "",
            "Format of regex_list: csv or domains; empty picks csv for a .csv file.",
        )

    def configure(self, updated) -> None:
        if "regex_list" not in updated and "regex_list_format" not in updated:
            return
        path = ctx.options.regex_list
        if not path:
            self.rules = []
            return
        list_format = ctx.options.regex_list_format or (
            "csv" if path.lower().endswith(".csv") else "domains"
        )
        if list_format not in ("csv", "domains"):
            raise ValueError(
                f"invalid regex_list_format {list_format!r}; expected csv or domains"
            )
        started = time.perf_counter()
        self.rules, invalid = read_rules(path, list_format)
        logging.info(
            "regex filter: compiled %d rules from %s (%s) in %.1f s, skipped %d invalid rows",
            len(self.rules),
            path,
            list_format,
            time.perf_counter() - started,
            invalid,
        )

    def request(self, flow: http.HTTPFlow) -> None:
        host = flow.request.host.lower().rstrip(".")
        rule = first_match(self.rules, host)
        if rule is not None and rule.block:
            flow.response = http.Response.make(
                403,
                f"Blocked: {host} is in category {rule.category}\n",
                {"Content-Type": "text/plain; charset=utf-8"},
            )


addons = [RegexFilter()]
