// Command testserver is a small OpenAI-compatible HTTP server that plays
// LocalAI's part in the real-node test cluster. It serves:
//
//	GET  /v1/models            one model, "test-model", in OpenAI's list shape
//	POST /v1/chat/completions  a chat.completion echoing the last user message
//	POST /models/apply         LocalAI's model install call: queued, never fetched
//	GET  /healthz, /readyz     200 "ok"
//
// Every response carries X-Served-By with the host name (the pod name), so a
// client can tell which pod answered. It listens on every address given with
// --listen (repeatable or comma separated; LISTEN in the environment) and
// shuts down gracefully on SIGTERM or SIGINT.
package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/isolator-dev/isolator/test/realnode/internal/httpserve"
)

// ModelID is the only model the server offers.
const ModelID = "test-model"

const maxBody = 1 << 20

func main() {
	var listen addrList
	flag.Var(&listen, "listen", `address to listen on, repeatable or comma separated (default ":8080", or $LISTEN)`)
	flag.Parse()
	if len(listen) == 0 {
		_ = listen.Set(os.Getenv("LISTEN"))
	}
	if len(listen) == 0 {
		listen = addrList{":8080"}
	}
	host, err := os.Hostname()
	if err != nil {
		log.Fatalf("hostname: %v", err)
	}
	if err := serve(listen, newHandler(host)); err != nil {
		log.Fatal(err)
	}
}

// addrList is a flag taking addresses repeatedly or comma separated.
type addrList []string

func (a *addrList) String() string { return strings.Join(*a, ",") }

func (a *addrList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*a = append(*a, s)
		}
	}
	return nil
}

// serve listens on every address and serves h until SIGTERM or SIGINT.
func serve(addrs []string, h http.Handler) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return httpserve.Serve(ctx, addrs, h, 10*time.Second)
}

// newHandler returns the server's routes; host is reported in X-Served-By.
func newHandler(host string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/models", only(http.MethodGet, models))
	mux.HandleFunc("/v1/chat/completions", only(http.MethodPost, chatCompletions))
	mux.HandleFunc("/models/apply", only(http.MethodPost, applyModel))
	mux.HandleFunc("/healthz", only(http.MethodGet, ok))
	mux.HandleFunc("/readyz", only(http.MethodGet, ok))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found_error", "no route for "+r.URL.Path)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Served-By", host)
		mux.ServeHTTP(w, r)
	})
}

// only answers 405 to any method but method (and HEAD for GET).
func only(method string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method && (method != http.MethodGet || r.Method != http.MethodHead) {
			w.Header().Set("Allow", method)
			writeError(w, http.StatusMethodNotAllowed, "invalid_request_error",
				fmt.Sprintf("method %s not allowed, use %s", r.Method, method))
			return
		}
		h(w, r)
	}
}

func ok(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok"))
}

type model struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

type modelList struct {
	Object string  `json:"object"`
	Data   []model `json:"data"`
}

func models(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, modelList{
		Object: "list",
		Data:   []model{{ID: ModelID, Object: "model", Created: 0, OwnedBy: "isolator-test"}},
	})
}

type chatMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

type chatRequest struct {
	Model    string        `json:"model"`
	Messages []chatMessage `json:"messages"`
}

type replyMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type choice struct {
	Index        int          `json:"index"`
	Message      replyMessage `json:"message"`
	FinishReason string       `json:"finish_reason"`
}

type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

type chatCompletion struct {
	ID      string   `json:"id"`
	Object  string   `json:"object"`
	Created int64    `json:"created"`
	Model   string   `json:"model"`
	Choices []choice `json:"choices"`
	Usage   usage    `json:"usage"`
}

func chatCompletions(w http.ResponseWriter, r *http.Request) {
	var req chatRequest
	if err := decode(w, r, &req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request_error", err.Error())
		return
	}
	if req.Model == "" {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "model is required")
		return
	}
	if len(req.Messages) == 0 {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "messages must be a non-empty array")
		return
	}
	var last string
	prompt := 0
	for i, m := range req.Messages {
		if m.Role == "" {
			writeError(w, http.StatusBadRequest, "invalid_request_error", fmt.Sprintf("messages[%d].role is required", i))
			return
		}
		text, err := contentText(m.Content)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid_request_error", fmt.Sprintf("messages[%d].content: %v", i, err))
			return
		}
		prompt += len(strings.Fields(text))
		if m.Role == "user" {
			last = text
		}
	}
	reply := "echo: " + last
	sum := sha256.Sum256([]byte(req.Model + "\x00" + reply))
	completion := len(strings.Fields(reply))
	writeJSON(w, http.StatusOK, chatCompletion{
		ID:      "chatcmpl-" + hex.EncodeToString(sum[:8]),
		Object:  "chat.completion",
		Created: time.Now().Unix(),
		Model:   req.Model,
		Choices: []choice{{
			Index:        0,
			Message:      replyMessage{Role: "assistant", Content: reply},
			FinishReason: "stop",
		}},
		Usage: usage{PromptTokens: prompt, CompletionTokens: completion, TotalTokens: prompt + completion},
	})
}

// contentText reads a message content: a string, an array of parts whose
// text parts are joined, or null.
func contentText(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", errors.New("must be a string or an array of content parts")
	}
	var texts []string
	for _, p := range parts {
		if p.Type == "text" {
			texts = append(texts, p.Text)
		}
	}
	return strings.Join(texts, "\n"), nil
}

type applyRequest struct {
	URL string `json:"url"`
	ID  string `json:"id"`
}

type applyResponse struct {
	UUID   string `json:"uuid"`
	Status string `json:"status"`
}

// applyModel accepts a model install request like LocalAI's and queues
// nothing: no model is ever fetched.
func applyModel(w http.ResponseWriter, r *http.Request) {
	var req applyRequest
	if err := decode(w, r, &req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request_error", err.Error())
		return
	}
	if req.URL == "" && req.ID == "" {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "url or id is required")
		return
	}
	writeJSON(w, http.StatusOK, applyResponse{UUID: newUUID(), Status: "queued"})
}

// decode reads one JSON object of at most maxBody bytes from the body.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("invalid JSON body: %w", err)
	}
	if dec.More() {
		return errors.New("invalid JSON body: more than one value")
	}
	return nil
}

// newUUID returns a random version 4 UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

type apiError struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func writeError(w http.ResponseWriter, status int, typ, msg string) {
	writeJSON(w, status, map[string]apiError{"error": {Message: msg, Type: typ}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
