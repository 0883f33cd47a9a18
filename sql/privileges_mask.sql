-- Secrets are masked by rule, not by list (issue 12 item 8): any key or
-- header whose name suggests a credential, at any depth and also inside
-- X-... names, and every query parameter and fragment of every URL.
SELECT key, value FROM jsonb_each(outbox.mask_config($${
	"url": "https://h.example/hook?sig=abc&X-Amz-Signature=def&tenant=7&flag#access_token=xyz",
	"headers": {"X-Auth": "a1", "X-Upstream-Authorization": "Bearer b2",
	            "Proxy-Authorization": "Basic c3", "X-Api-Key": "d4", "Cookie": "e5",
	            "X-Session-Id": "f6", "X-Hub-Signature-256": "g7", "X-Sig": "h8",
	            "X-Access-Token": "i9", "X-Request-Id": "visible", "Content-Type": "visible",
	            "Accept": "visible"},
	"properties": {"sasl.oauthbearer.config": "principal=admin secret=j10",
	               "sasl.jaas.config": "k11", "ssl.key.pem": "l12", "sasl.username": "visible",
	               "ssl.keystore.password": "m13", "linger.ms": 5,
	               "sasl.oauthbearer.client.secret": "n14"},
	"nested": [{"OAuth": {"x": "o15"}}, {"bearer_value": "p16"}, {"passwd": "q17"},
	           {"pin": "r18"}, {"monkey": "visible"}, {"design": "visible"}],
	"max_attempts": 3, "function": "public.handler", "channel": "visible"
}$$)) ORDER BY key;
-- URLs: userinfo, every query value, the fragment; URLs without them stay.
SELECT outbox.mask_config(jsonb_build_object('u', u)) ->> 'u' AS masked
  FROM (VALUES ('https://example.com/hook'),
               ('https://example.com/hook?a=1&b=2'),
               ('https://example.com/hook?bare'),
               ('https://example.com/hook?a=1#frag'),
               ('https://user:pw@example.com/'),
               ('nats://u:p@h1:4222, nats://h2:4222?token=t')) v(u)
 ORDER BY u;
