// Drives the official openai Node SDK against a live chatsite; prints what it saw as JSON.
// Usage: node openai_check.mjs BASE_URL API_KEY MODEL
import OpenAI from "openai";

const [baseURL, apiKey, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `${baseURL}/v1`, apiKey, maxRetries: 0 });
const messages = [{ role: "user", content: "Hello!" }];
const result = {};

const whole = await client.chat.completions.create({ model, messages });
result.whole = { content: whole.choices[0].message.content, usage: whole.usage };

const stream = await client.chat.completions.create({
  model,
  messages,
  stream: true,
  stream_options: { include_usage: true },
});
const pieces = [];
let usage = null;
for await (const chunk of stream) {
  if (chunk.choices.length) pieces.push(chunk.choices[0].delta?.content ?? "");
  if (chunk.usage) usage = chunk.usage;
}
result.streamed = { content: pieces.join(""), usage };

// The SDK asks for base64 float32 unless told otherwise, and decodes it itself.
const embedded = await client.embeddings.create({ model, input: ["a", "bbbbbbbbbbbbbbbbbbbb"] });
result.embeddings = embedded.data.map((item) => item.embedding);

result.models = [];
for await (const item of client.models.list()) result.models.push(item.id);

try {
  await client.chat.completions.create({ model: "no-such-model", messages });
} catch (error) {
  result.missing = { status: error.status, code: error.code, requestId: error.requestID ?? null };
}
console.log(JSON.stringify(result));
