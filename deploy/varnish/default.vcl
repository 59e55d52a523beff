# Varnish in front of the Murmur gateway: caches its public GETs, drops them by
# tag (vmod_xkey) when the gateway purges after a write.
#
# Written for Varnish 7.1 with varnish-modules 0.20 (vmod_xkey). Start it with
#
#   varnishd -f /etc/varnish/default.vcl -p http_gzip_support=off -s malloc,256m ...
#
# http_gzip_support=off is REQUIRED: by default Varnish rewrites the client's
# Accept-Encoding to "gzip" and compresses/decompresses bodies itself. The
# gateway negotiates zstd/br/gzip on its own and sends "Vary: Accept-Encoding,
# Accept"; with gzip support off Varnish passes the client's Accept-Encoding to
# the gateway unchanged and stores one variant per distinct raw header value
# (Vary is matched on the raw headers: no normalisation here, because doing it
# right means parsing q-values, e.g. "br;q=0").
#
# What the gateway sends for a response to be cached (anything else is not):
#   Cache-Control: public, max-age=30, s-maxage=300, stale-while-revalidate=30,
#                  stale-if-error=86400       (s-maxage is Varnish's TTL)
#   Surrogate-Key: user:<id>:public post:<id> (space-separated purge tags)
# and no Set-Cookie, no private/no-store/no-cache. Requests with Authorization
# or Cookie are never looked up nor stored. Purge: from an address in
# "purgers", send
#   PURGE / HTTP/1.1
#   xkey-purge: <tag> <tag> ...
# which answers 200 with the number of objects dropped in the body (and in the
# xkey-purged header).
#
# Health: Varnish probes GET /readyz every 2 s. While 3 of the last 5 probes
# fail it sends the gateway nothing: stale copies are served up to their
# stale-if-error, everything else gets a 503.

vcl 4.1;

import std;
import xkey;

# The backend's address: tests/support/varnish.py rewrites the two lines marked
# MURMUR-BACKEND-HOST / MURMUR-BACKEND-PORT to point a copy at a test server.
# Varnish resolves .host when the VCL is compiled, so the name must resolve then.
backend gateway {
    .host = "gateway";  # MURMUR-BACKEND-HOST
    .port = "8080";  # MURMUR-BACKEND-PORT
    .connect_timeout = 2s;
    .first_byte_timeout = 30s;
    .between_bytes_timeout = 10s;
    # Drives std.healthy(): a sick gateway (or one whose timeline is down) gets
    # the stale-if-error window; a healthy one only stale-while-revalidate.
    # .initial = .threshold: healthy as soon as the VCL is loaded.
    .probe = {
        .url = "/readyz";
        .interval = 2s;
        .timeout = 1s;
        .window = 5;
        .threshold = 3;
        .initial = 3;
    }
}

# Who may PURGE: this host and the private ranges (the compose network).
acl purgers {
    "127.0.0.1";
    "::1";
    "10.0.0.0"/8;
    "172.16.0.0"/12;
    "192.168.0.0"/16;
}

sub vcl_recv {
    # Internal marker of the stale-if-error state machine below: never from a
    # client.
    if (req.restarts == 0) {
        unset req.http.X-Murmur-Stale;
    }

    if (req.method == "PURGE") {
        if (client.ip !~ purgers) {
            return (synth(403, "Forbidden"));
        }
        if (!req.http.xkey-purge) {
            return (synth(400, "xkey-purge header required"));
        }
        # xkey splits the value on spaces and commas; returns how many objects
        # it dropped.
        set req.http.xkey-purged = xkey.purge(req.http.xkey-purge);
        return (synth(200, "Purged"));
    }

    if (req.method != "GET" && req.method != "HEAD" && req.method != "PUT" &&
        req.method != "POST" && req.method != "PATCH" && req.method != "DELETE" &&
        req.method != "OPTIONS") {
        # The built-in VCL would pipe these; the gateway has no use for them.
        return (synth(405, "Method Not Allowed"));
    }
    if (req.method != "GET" && req.method != "HEAD") {
        return (pass);
    }
    # Anything authenticated is per user: never shared. (Clients authenticate
    # with bearer tokens; a Cookie could be a session some day: not cached either.)
    if (req.http.Authorization || req.http.Cookie) {
        return (pass);
    }

    if (req.http.X-Murmur-Stale == "refresh") {
        # vcl_hit found this object past its stale-while-revalidate window
        # while the gateway is healthy: a grace of 0 makes the lookup a miss
        # (the stale copy stays, for the fallback in vcl_synth).
        set req.grace = 0s;
    } elsif (req.http.X-Murmur-Stale == "fallback") {
        # A restart keeps req.grace: lift the cap again (the lookup uses the
        # smaller of req.grace and the object's grace).
        set req.grace = 3650d;
    }
    # Falls through to the built-in vcl_recv (host normalisation, hash).
}

sub vcl_hit {
    # Varnish has one stale window per object, beresp.grace, set below to the
    # larger of stale-while-revalidate and stale-if-error. Past the
    # stale-while-revalidate part, and with a healthy gateway, a stale copy is
    # not served: restart the request as a miss. (vcl_hit cannot return (miss)
    # in Varnish 7; req.grace is the documented lever, and only vcl_recv can
    # set it.)
    if (obj.ttl <= 0s && obj.http.X-Murmur-Swr && !req.http.X-Murmur-Stale &&
        std.healthy(req.backend_hint) &&
        obj.ttl + std.duration(obj.http.X-Murmur-Swr, 0s) <= 0s) {
        set req.http.X-Murmur-Stale = "refresh";
        return (restart);
    }
}

sub vcl_backend_response {
    if (bereq.uncacheable) {
        # A pass (Authorization, Cookie, not GET/HEAD): nothing is stored.
        return (deliver);
    }

    if (beresp.status >= 500) {
        if (bereq.is_bgfetch || bereq.http.X-Murmur-Stale == "refresh") {
            # stale-if-error: keep the stale copy. For a background refresh
            # this is the documented Varnish 7 pattern. For the refresh of
            # vcl_hit it must be an abandon too: a fetch that completes, even
            # an uncacheable one, replaces the stale object it was started
            # against; an abandoned one leaves it for the fallback in vcl_synth.
            # (Which is also why X-Murmur-Stale reaches the gateway: the
            # backend side has nowhere else to read it from. It ignores it.)
            return (abandon);
        }
        # Errors are never stored, whatever their Cache-Control says, and
        # leave no hit-for-miss object either: the next request just asks again.
        set beresp.ttl = 0s;
        set beresp.grace = 0s;
        set beresp.keep = 0s;
        set beresp.uncacheable = true;
        return (deliver);
    }

    # Never stored (hit-for-miss for 2 minutes, as the built-in VCL does):
    # private or no-store/no-cache, a Set-Cookie, Vary: *, or no explicit
    # freshness at all. The last one makes caching opt-in: a gateway response
    # without max-age/s-maxage (an error document, say) is not kept for
    # Varnish's default_ttl.
    if (beresp.http.Cache-Control ~ "(?i)(^|[\s,])(private|no-store|no-cache)\b" ||
        beresp.http.Cache-Control !~ "(?i)(^|[\s,])(s-maxage|max-age)\s*=" ||
        beresp.http.Surrogate-Control ~ "(?i)no-store" ||
        beresp.http.Set-Cookie ||
        beresp.http.Vary == "*" ||
        beresp.ttl <= 0s) {
        set beresp.ttl = 120s;
        set beresp.uncacheable = true;
        return (deliver);
    }

    # Purge tags: xkey indexes the "xkey" header; the gateway speaks the
    # vendor-neutral Surrogate-Key. Several Surrogate-Key lines are joined.
    if (beresp.http.Surrogate-Key) {
        std.collect(beresp.http.Surrogate-Key, " ");
        set beresp.http.xkey = beresp.http.Surrogate-Key;
        unset beresp.http.Surrogate-Key;
    }

    # Grace. Varnish already set beresp.grace from stale-while-revalidate (or
    # default_grace). stale-if-error has no separate timer in Varnish: an
    # object can only be served stale within ttl + grace, so grace must cover
    # the longer of the two windows. The shorter stale-while-revalidate window
    # is kept on the object (X-Murmur-Swr) and enforced in vcl_hit while the
    # gateway is healthy; beyond it the copy is only served if the gateway is
    # sick (probe) or the refresh fails (vcl_synth).
    if (beresp.http.Cache-Control ~ "(?i)stale-if-error\s*=\s*[0-9]+") {
        set beresp.http.X-Murmur-Sie = regsub(beresp.http.Cache-Control,
            "(?i)^.*stale-if-error\s*=\s*([0-9]+).*$", "\1s");
        if (std.duration(beresp.http.X-Murmur-Sie, 0s) > beresp.grace) {
            set beresp.http.X-Murmur-Swr = "" + beresp.grace + "s";
            set beresp.grace = std.duration(beresp.http.X-Murmur-Sie, 0s);
        }
        unset beresp.http.X-Murmur-Sie;
    }

    # Keep: past ttl + grace an object is never served, but with a validator
    # Varnish can revalidate it with a conditional request (a 304 is cheap for
    # the gateway). Without a validator keeping it would only waste memory.
    if (beresp.http.ETag || beresp.http.Last-Modified) {
        set beresp.keep = 1h;
    }
    # Falls through to the built-in vcl_backend_response (checks again, same
    # verdicts).
}

sub vcl_backend_error {
    if (bereq.is_bgfetch || bereq.http.X-Murmur-Stale == "refresh") {
        # The gateway is unreachable: keep the stale copy rather than
        # replacing it with this error (see vcl_backend_response).
        return (abandon);
    }
}

sub vcl_deliver {
    if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
    # Tags and internal bookkeeping are for this cache only.
    unset resp.http.Surrogate-Key;
    unset resp.http.xkey;
    unset resp.http.X-Murmur-Swr;
}

sub vcl_synth {
    # The refresh of vcl_hit failed (a 5xx or no answer, abandoned in the
    # backend subs): serve the stale copy instead, within stale-if-error. The
    # restarted lookup has full grace again and vcl_hit lets it through.
    if (resp.status == 503 && req.http.X-Murmur-Stale == "refresh") {
        set req.http.X-Murmur-Stale = "fallback";
        return (restart);
    }
    if (req.method == "PURGE") {
        set resp.http.Content-Type = "text/plain; charset=utf-8";
        if (resp.status == 200) {
            set resp.http.xkey-purged = req.http.xkey-purged;
            set resp.body = req.http.xkey-purged + {"
"};
        } else {
            set resp.body = resp.reason + {"
"};
        }
        return (deliver);
    }
}
