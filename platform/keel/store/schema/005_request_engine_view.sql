-- What the engine saw and produced, beside what the client sent and saw (issue 14): training rows are
-- built from these, so a mined prompt is the one the engine received and an answer is the model's own.
ALTER TABLE requests ADD COLUMN IF NOT EXISTS engine_messages JSON;    -- after routing: system prompt,
                                                                      -- domain template + chunks, history
ALTER TABLE requests ADD COLUMN IF NOT EXISTS engine_prompt VARCHAR;   -- the prompt text vLLM rendered
ALTER TABLE requests ADD COLUMN IF NOT EXISTS completion_text VARCHAR; -- the model's own text (choice 0)
ALTER TABLE requests ADD COLUMN IF NOT EXISTS appended_text VARCHAR;   -- added by the gateway ("Sources:")
