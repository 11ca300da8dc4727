"""The test API server's storage: objects per resource, a global resourceVersion, and the event
history watches replay from, with etcd-like compaction."""

import bisect
import copy
import datetime
import threading
import uuid


class ApiError(Exception):
    def __init__(self, code, reason, message):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def status(self):
        return status_object(self.code, self.reason, self.message)


def status_object(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def key_of(obj, namespaced):
    meta = obj.get("metadata") or {}
    ns = (meta.get("namespace") or "default") if namespaced else ""
    return ns, meta.get("name", "")


class Event:
    __slots__ = ("rv", "resource", "type", "obj", "prev")

    def __init__(self, rv, resource, type_, obj, prev):
        self.rv, self.resource, self.type, self.obj, self.prev = rv, resource, type_, obj, prev


class Store:
    def __init__(self, resources, first_rv=1000):
        """resources: name -> Resource (kind, namespaced)."""
        self.resources = resources
        self.cond = threading.Condition()
        self.rv = first_rv
        self.min_rv = first_rv  # the oldest resourceVersion a watch or continue may start from
        self.objects = {name: {} for name in resources}
        self.log = []      # Events in rv order
        self.log_rvs = []  # their rvs, for bisect
        self.max_history = None  # keep at most this many events (None: everything)

    # -- writes -----------------------------------------------------------------------------

    def _record(self, resource, type_, obj, prev):
        ev = Event(self.rv, resource, type_, obj, prev)
        self.log.append(ev)
        self.log_rvs.append(self.rv)
        if self.max_history is not None and len(self.log) > self.max_history:
            drop = len(self.log) - self.max_history
            self.min_rv = self.log[drop - 1].rv
            del self.log[:drop]
            del self.log_rvs[:drop]
        self.cond.notify_all()

    def _stamp(self, obj, prev=None):
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            return obj
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        if prev is not None and isinstance(prev.get("metadata"), dict):
            meta.setdefault("uid", prev["metadata"].get("uid"))
            meta.setdefault("creationTimestamp", prev["metadata"].get("creationTimestamp"))
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp",
                        datetime.datetime.utcnow().replace(microsecond=0).isoformat() + "Z")
        return obj

    def _prepare(self, resource, obj):
        res = self.resources[resource]
        if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
            raise ApiError(400, "BadRequest", "an object with metadata is required")
        obj = copy.deepcopy(obj)
        obj.setdefault("kind", res.kind)
        obj.setdefault("apiVersion", res.api_version)
        meta = obj["metadata"]
        if not meta.get("name"):
            raise ApiError(422, "Invalid", "metadata.name: Required value")
        if res.namespaced:
            meta.setdefault("namespace", "default")
        else:
            meta.pop("namespace", None)
        return obj, key_of(obj, res.namespaced)

    def create(self, resource, obj):
        with self.cond:
            obj, key = self._prepare(resource, obj)
            if key in self.objects[resource]:
                raise ApiError(409, "AlreadyExists", '%s "%s" already exists' % (resource, key[1]))
            obj["metadata"].pop("resourceVersion", None)
            self._stamp(obj)
            self.objects[resource][key] = obj
            self._record(resource, "ADDED", obj, None)
            return copy.deepcopy(obj)

    def update(self, resource, obj):
        with self.cond:
            obj, key = self._prepare(resource, obj)
            prev = self.objects[resource].get(key)
            if prev is None:
                raise ApiError(404, "NotFound", '%s "%s" not found' % (resource, key[1]))
            want = obj["metadata"].pop("resourceVersion", None)
            if want and want != prev["metadata"].get("resourceVersion"):
                raise ApiError(409, "Conflict", "the object has been modified")
            self._stamp(obj, prev)
            self.objects[resource][key] = obj
            self._record(resource, "MODIFIED", obj, prev)
            return copy.deepcopy(obj)

    def update_owned(self, resource, obj):
        """update() for load generators: obj (which must already carry kind, apiVersion and
        namespace) is stored as it is and given up by the caller, and nothing is returned.
        The two deep copies of update() cost ~5 ms per 100-endpoint slice, which capped the
        soak's churn far below 500 changes per second."""
        with self.cond:
            res = self.resources[resource]
            key = key_of(obj, res.namespaced)
            prev = self.objects[resource].get(key)
            if prev is None:
                raise ApiError(404, "NotFound", '%s "%s" not found' % (resource, key[1]))
            obj["metadata"].pop("resourceVersion", None)
            self._stamp(obj, prev)
            self.objects[resource][key] = obj
            self._record(resource, "MODIFIED", obj, prev)

    def apply(self, resource, obj):
        """Create or replace, whichever applies."""
        with self.cond:
            _, key = self._prepare(resource, obj)
            if key in self.objects[resource]:
                return self.update(resource, obj)
            return self.create(resource, obj)

    def delete(self, resource, ns, name):
        with self.cond:
            key = (ns if self.resources[resource].namespaced else "", name)
            prev = self.objects[resource].pop(key, None)
            if prev is None:
                raise ApiError(404, "NotFound", '%s "%s" not found' % (resource, name))
            gone = copy.deepcopy(prev)
            self.rv += 1
            gone["metadata"]["resourceVersion"] = str(self.rv)
            self._record(resource, "DELETED", gone, prev)
            return copy.deepcopy(gone)

    def compact(self):
        """Forget the whole history, as a restarted API server with a compacted etcd would: any
        watch or continue token from before now gets 410."""
        with self.cond:
            self.rv += 1
            self.min_rv = self.rv
            self.log.clear()
            self.log_rvs.clear()
            self.cond.notify_all()

    def backup(self):
        """A copy of everything, as an etcd snapshot would hold it."""
        with self.cond:
            return copy.deepcopy((self.rv, self.min_rv, self.objects, self.log, self.log_rvs))

    def restore(self, snapshot):
        """Goes back to a backup(), as an etcd restore does: objects written since are gone and the
        resourceVersion goes back, so clients hold resourceVersions the server has not reached."""
        with self.cond:
            (self.rv, self.min_rv, self.objects, self.log, self.log_rvs) = copy.deepcopy(snapshot)
            self.cond.notify_all()

    # -- reads ------------------------------------------------------------------------------

    def get(self, resource, ns, name):
        with self.cond:
            key = (ns if self.resources[resource].namespaced else "", name)
            obj = self.objects[resource].get(key)
            if obj is None:
                raise ApiError(404, "NotFound", '%s "%s" not found' % (resource, name))
            return copy.deepcopy(obj)

    def snapshot(self, resource, at_rv=None):
        """(rv, {key: obj}) of `resource` now, or as it was at at_rv (>= min_rv)."""
        with self.cond:
            state = dict(self.objects[resource])
            if at_rv is None or at_rv >= self.rv:
                return self.rv, state
            if at_rv < self.min_rv:
                raise ApiError(410, "Expired", "too old resource version: %d (%d)" % (at_rv, self.min_rv))
            # Undo what happened after at_rv, newest first.
            start = bisect.bisect_right(self.log_rvs, at_rv)
            namespaced = self.resources[resource].namespaced
            for ev in reversed(self.log[start:]):
                if ev.resource != resource:
                    continue
                key = key_of(ev.obj, namespaced)
                if ev.prev is None:
                    state.pop(key, None)
                else:
                    state[key] = ev.prev
            return at_rv, state

    def events_after(self, resource, rv):
        """Events of `resource` with resourceVersion > rv. Caller holds cond."""
        start = bisect.bisect_right(self.log_rvs, rv)
        return [ev for ev in self.log[start:] if ev.resource == resource]
