-- wrk script: connect to 127.0.0.1 whatever host the URL names, so the URL's
-- host (bench.test) is still sent as the TLS server name and Host header,
-- without touching /etc/hosts or DNS.
function wrk.resolve(host, service)
  wrk.addrs = wrk.lookup("127.0.0.1", service)
end
