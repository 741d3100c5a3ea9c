"""clip-retrieval's own ``ClipClient`` (clip-retrieval 2.45.0, from a peer venv) against ``mmrec index serve``.

Not a speed figure: a check that the real client of clip-retrieval's back end gets results from an mmrec
index over ``/knn-service``, by text and by embedding, and reads the reply fields it documents (``id``,
``similarity``, ``caption``, ``url``).

1. **Peer.** ``bench-out/peer-clip-client``: ``pip install --no-deps clip-retrieval==2.45.0`` plus
   ``requests`` and its dependencies (31 MB). ``clip_retrieval/__init__.py`` imports its whole back end
   (torch, faiss, flask ...); ``clip_client.py`` needs only ``requests``, so the script loads that file
   of the installed package by path, unchanged.
2. **Index.** Eight SYNTHETIC titles on two planted topics (music, food) embedded by all-MiniLM-L6-v2
   (``mmrec extract``, text only), a ``faiss:Flat`` index over column ``text``, a metadata Parquet with the
   titles as ``caption`` and an image ``url`` per item, served on a free loopback port (``--name titles``).
3. **Queries** from the peer: ``ClipClient(url + "/knn-service", indice_name="titles", num_images=3,
   deduplicate=False)``: ``query(text=...)`` for each topic and ``query(embedding_input=...)`` with an
   item's own vector. Checked: every text hit is of the query's topic, the embedding query finds the item
   first with similarity 1, every hit has ``id``, ``similarity``, ``caption``, ``url``.

    OMP_NUM_THREADS=1 .venv/bin/python bench/clip_client.py          # writes bench-out/clip-client/report.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from peers import DEFAULT_DIR, ensure_venv, peer_python

MUSIC = ["live guitar concert tonight", "rock band plays on stage", "jazz piano trio performs", "singer covers a pop song"]
FOOD = ["homemade noodle soup recipe", "how to bake sourdough bread", "spicy fried chicken dinner", "fresh salad with lemon"]
PACKAGES = ["--no-deps", "clip-retrieval==2.45.0", "requests", "urllib3", "idna", "certifi", "charset-normalizer"]

PEER_CODE = r"""
import importlib.util, json, sys
from pathlib import Path
root = Path(importlib.util.find_spec("clip_retrieval").submodule_search_locations[0])
spec = importlib.util.spec_from_file_location("clip_client", root / "clip_client.py")
clip_client = importlib.util.module_from_spec(spec)
spec.loader.exec_module(clip_client)
url, name, vector = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
client = clip_client.ClipClient(url=url + "/knn-service", indice_name=name, num_images=3, deduplicate=False)
print(json.dumps({"music": client.query(text="an acoustic guitar gig"), "food": client.query(text="a bowl of ramen noodles"),
                  "embedding": client.query(embedding_input=vector), "client": str(root / "clip_client.py")}))
"""


def build(work: Path) -> tuple[Path, Path, list]:
    """The SYNTHETIC titles' index and metadata (module docstring, step 2); returns them and item 0's vector."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mmrec.pipelines.extract import extract
    from mmrec.pipelines.index import build_index
    from mmrec.store import read_embeddings

    titles = work / "titles"
    titles.mkdir(parents=True, exist_ok=True)
    keys = []
    for i, text in enumerate(MUSIC + FOOD):
        keys.append(f"{'music' if i < 4 else 'food'}-{i}")
        (titles / f"{keys[-1]}.txt").write_text(text)
    extract(str(titles), work / "emb", image=None, text="hf-text:all-MiniLM-L6-v2", audio=None, num_workers=0, progress=False)
    build_index(work / "emb", work / "titles-index", "faiss:Flat", column="text", progress=False)
    pq.write_table(pa.table({"key": keys, "caption": MUSIC + FOOD, "url": [f"https://example.invalid/{k}.jpg" for k in keys]}),
                   work / "metadata.parquet")
    emb_keys, vectors = read_embeddings(work / "emb", "text")
    return work / "titles-index", work / "metadata.parquet", vectors[emb_keys.index(keys[0])].tolist()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--peer-venv", default=str(DEFAULT_DIR / "peer-clip-client"))
    p.add_argument("--out", default=str(DEFAULT_DIR / "clip-client"))
    args = p.parse_args()
    peer = ensure_venv("clip-client", Path(args.peer_venv), packages=PACKAGES, module="requests",
                       distributions=["clip-retrieval", "requests"])
    from mmrec.index.server import make_server

    with tempfile.TemporaryDirectory() as tmp:
        index, metadata, vector = build(Path(tmp))
        server = make_server(index, port=0, metadata=str(metadata))
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            done = subprocess.run([peer_python(peer["venv"]), "-c", PEER_CODE, server.url, "titles-index", json.dumps(vector)],
                                  capture_output=True, text=True, timeout=300)
        finally:
            server.shutdown()
            server.server_close()
    if done.returncode != 0:
        sys.exit(f"ClipClient failed:\n{done.stderr}")
    replies = json.loads(done.stdout.strip().splitlines()[-1])
    checks = {
        "music query: music hits": all(h["key"].startswith("music") for h in replies["music"]),
        "food query: food hits": all(h["key"].startswith("food") for h in replies["food"]),
        "embedding query: the item first, similarity 1": replies["embedding"][0]["key"] == "music-0"
        and abs(replies["embedding"][0]["similarity"] - 1) < 1e-4,
        "fields id, similarity, caption, url": all({"id", "similarity", "caption", "url"} <= set(h)
                                                   for q in ("music", "food", "embedding") for h in replies[q]),
    }
    for query in ("music", "food", "embedding"):
        print(f"{query:>9}: " + "; ".join(f"{h['id']} {h['caption']!r} {h['similarity']:.3f}" for h in replies[query]))
    for name, ok in checks.items():
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps({"peer": peer, "replies": replies, "checks": checks}, indent=2))
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()
