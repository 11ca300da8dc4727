"""Kubernetes label and field selectors, as the API server parses and matches them."""

import re


class SelectorError(ValueError):
    pass


def _split_top_level(text):
    """Splits on commas that are not inside parentheses."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_SET_RE = re.compile(r"^(" + _KEY + r")\s+(in|notin)\s*\(([^)]*)\)$")
_CMP_RE = re.compile(r"^(" + _KEY + r")\s*(==|!=|=)\s*([-A-Za-z0-9_.]*)$")
_EXISTS_RE = re.compile(r"^(!?)\s*(" + _KEY + r")$")


def parse_label_selector(text):
    """Returns a predicate over a labels dict. Raises SelectorError for what the API rejects."""
    reqs = []
    for part in _split_top_level(text or ""):
        m = _SET_RE.match(part)
        if m:
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",") if v.strip()}
            if op == "in":
                reqs.append(lambda l, k=key, vs=values: k in l and l[k] in vs)
            else:
                reqs.append(lambda l, k=key, vs=values: k not in l or l[k] not in vs)
            continue
        m = _CMP_RE.match(part)
        if m:
            key, op, value = m.groups()
            if op == "!=":
                reqs.append(lambda l, k=key, v=value: l.get(k) != v)
            else:
                reqs.append(lambda l, k=key, v=value: k in l and l[k] == v)
            continue
        m = _EXISTS_RE.match(part)
        if m:
            neg, key = m.groups()
            if neg:
                reqs.append(lambda l, k=key: k not in l)
            else:
                reqs.append(lambda l, k=key: k in l)
            continue
        raise SelectorError("unable to parse requirement: %r" % part)
    return lambda labels: all(r(labels) for r in reqs)


FIELDS = {
    "metadata.name": lambda o: o.get("metadata", {}).get("name", ""),
    "metadata.namespace": lambda o: o.get("metadata", {}).get("namespace", ""),
}


def parse_field_selector(text):
    """metadata.name / metadata.namespace with =, == and !=, comma-separated."""
    reqs = []
    for part in _split_top_level(text or ""):
        m = re.match(r"^([A-Za-z.]+)\s*(==|!=|=)\s*(.*)$", part)
        if not m:
            raise SelectorError("invalid field selector: %r" % part)
        field, op, value = m.groups()
        if field not in FIELDS:
            raise SelectorError('field label not supported: %s' % field)
        get = FIELDS[field]
        if op == "!=":
            reqs.append(lambda o, g=get, v=value: g(o) != v)
        else:
            reqs.append(lambda o, g=get, v=value: g(o) == v)
    return lambda obj: all(r(obj) for r in reqs)


def labels_of(obj):
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    labels = meta.get("labels") if isinstance(meta, dict) else None
    return labels if isinstance(labels, dict) else {}
