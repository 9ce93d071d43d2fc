-- Issue 27: `type: "score"` feedback, a grader's 0-1 score of an answer (the judged simulation's judge):
-- the canary's judge_score signal. Mining never reads it.
ALTER TABLE feedback ADD COLUMN IF NOT EXISTS score DOUBLE;
