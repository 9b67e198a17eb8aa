package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// do serves one request and returns the response's status, header and JSON body.
func do(t *testing.T, method, path, body string) (int, http.Header, map[string]any) {
	t.Helper()
	var req *http.Request
	if body == "" {
		req = httptest.NewRequest(method, path, nil)
	} else {
		req = httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	newHandler("pod-a").ServeHTTP(rec, req)
	if got := rec.Header().Get("X-Served-By"); got != "pod-a" {
		t.Errorf("%s %s: X-Served-By = %q, want pod-a", method, path, got)
	}
	var out map[string]any
	if strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
		if err := json.NewDecoder(rec.Body).Decode(&out); err != nil {
			t.Fatalf("%s %s: decode: %v", method, path, err)
		}
	}
	return rec.Code, rec.Header(), out
}

func TestModelsListsTheTestModel(t *testing.T) {
	code, _, body := do(t, http.MethodGet, "/v1/models", "")
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	if body["object"] != "list" {
		t.Errorf("object = %v", body["object"])
	}
	data, _ := body["data"].([]any)
	if len(data) != 1 {
		t.Fatalf("data = %v", body["data"])
	}
	m := data[0].(map[string]any)
	if m["id"] != ModelID || m["object"] != "model" {
		t.Errorf("model = %v", m)
	}
}

func TestChatCompletionEchoesLastUserMessage(t *testing.T) {
	req := `{"model":"test-model","messages":[
		{"role":"system","content":"be brief"},
		{"role":"user","content":"first"},
		{"role":"assistant","content":"ok"},
		{"role":"user","content":[{"type":"text","text":"hello there"}]}]}`
	code, _, body := do(t, http.MethodPost, "/v1/chat/completions", req)
	if code != http.StatusOK {
		t.Fatalf("status %d: %v", code, body)
	}
	if body["object"] != "chat.completion" || body["model"] != "test-model" {
		t.Errorf("body = %v", body)
	}
	if id, _ := body["id"].(string); !strings.HasPrefix(id, "chatcmpl-") {
		t.Errorf("id = %v", body["id"])
	}
	choices := body["choices"].([]any)
	c := choices[0].(map[string]any)
	msg := c["message"].(map[string]any)
	if msg["role"] != "assistant" || msg["content"] != "echo: hello there" || c["finish_reason"] != "stop" {
		t.Errorf("choice = %v", c)
	}
	u := body["usage"].(map[string]any)
	if u["total_tokens"].(float64) != u["prompt_tokens"].(float64)+u["completion_tokens"].(float64) {
		t.Errorf("usage = %v", u)
	}

	_, _, again := do(t, http.MethodPost, "/v1/chat/completions", req)
	if again["id"] != body["id"] {
		t.Errorf("reply not deterministic: ids %v and %v", body["id"], again["id"])
	}
}

func TestChatCompletionRejectsBadInput(t *testing.T) {
	for name, req := range map[string]string{
		"not json":       `{"model":`,
		"no model":       `{"messages":[{"role":"user","content":"hi"}]}`,
		"no messages":    `{"model":"test-model"}`,
		"empty messages": `{"model":"test-model","messages":[]}`,
		"no role":        `{"model":"test-model","messages":[{"content":"hi"}]}`,
		"bad content":    `{"model":"test-model","messages":[{"role":"user","content":42}]}`,
		"trailing data":  `{"model":"test-model","messages":[{"role":"user","content":"hi"}]} {}`,
	} {
		t.Run(name, func(t *testing.T) {
			code, _, body := do(t, http.MethodPost, "/v1/chat/completions", req)
			if code != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", code)
			}
			e, _ := body["error"].(map[string]any)
			if e == nil || e["type"] != "invalid_request_error" || e["message"] == "" {
				t.Errorf("error body = %v", body)
			}
		})
	}
}

func TestWrongMethodIs405(t *testing.T) {
	for _, c := range []struct{ method, path, allow string }{
		{http.MethodGet, "/v1/chat/completions", "POST"},
		{http.MethodPost, "/v1/models", "GET"},
		{http.MethodGet, "/models/apply", "POST"},
		{http.MethodDelete, "/healthz", "GET"},
	} {
		code, hdr, body := do(t, c.method, c.path, "")
		if code != http.StatusMethodNotAllowed || hdr.Get("Allow") != c.allow {
			t.Errorf("%s %s: status %d Allow %q", c.method, c.path, code, hdr.Get("Allow"))
		}
		if _, ok := body["error"]; !ok {
			t.Errorf("%s %s: no error body", c.method, c.path)
		}
	}
}

func TestApplyModelQueuesWithoutFetching(t *testing.T) {
	fetched := false
	remote := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { fetched = true }))
	defer remote.Close()

	code, _, body := do(t, http.MethodPost, "/models/apply", `{"url":"`+remote.URL+`/model.yaml"}`)
	if code != http.StatusOK {
		t.Fatalf("status %d: %v", code, body)
	}
	if body["status"] != "queued" {
		t.Errorf("status = %v", body["status"])
	}
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	if id, _ := body["uuid"].(string); !uuid.MatchString(id) {
		t.Errorf("uuid = %v", body["uuid"])
	}
	if fetched {
		t.Error("the model URL was fetched")
	}

	code, _, _ = do(t, http.MethodPost, "/models/apply", `{}`)
	if code != http.StatusBadRequest {
		t.Errorf("empty request: status %d, want 400", code)
	}
}

func TestHealthAndReady(t *testing.T) {
	for _, p := range []string{"/healthz", "/readyz"} {
		rec := httptest.NewRecorder()
		newHandler("pod-a").ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p, nil))
		if rec.Code != http.StatusOK || rec.Body.String() != "ok" || rec.Header().Get("X-Served-By") != "pod-a" {
			t.Errorf("%s: %d %q", p, rec.Code, rec.Body.String())
		}
	}
	code, _, _ := do(t, http.MethodGet, "/nope", "")
	if code != http.StatusNotFound {
		t.Errorf("unknown path: status %d", code)
	}
}

func TestListenFlagTakesListsAndRepeats(t *testing.T) {
	var a addrList
	_ = a.Set(":8080, :9090")
	_ = a.Set("127.0.0.1:7000")
	_ = a.Set("")
	if got := a.String(); got != ":8080,:9090,127.0.0.1:7000" {
		t.Errorf("addresses = %q", got)
	}
}
