"""Recipes (``bioreason.recipes``): overrides, free-form sections, and every bad key, value, file or output folder
refused by name with what it takes, before any model loads."""

from __future__ import annotations

import re

import pytest

from bioreason.recipes import load_recipe


def test_recipe_overrides_and_unknown_keys():
    from bioreason.errors import RecipeError

    r = load_recipe("tiny", ["train.lr=1e-4", "grpo.rewards={correctness: 1.0}"])
    assert r["train"]["lr"] == 1e-4 and r["grpo"]["rewards"] == {"correctness": 1.0}
    with pytest.raises(RecipeError, match="unknown recipe key 'train.lrr'"):
        load_recipe("tiny", ["train.lrr=1"])
    with pytest.raises(RecipeError, match=r"not found: .* shipped recipes \(default, default-cpu, kegg, paper, tiny\)"):
        load_recipe("no-such-recipe")  # every shipped recipe named (kegg was missing), no accelerate config


def test_a_recipe_file_that_is_not_a_mapping_of_sections_is_named(tmp_path):
    from bioreason.errors import RecipeError

    listed, flat = tmp_path / "list.yaml", tmp_path / "flat.yaml"
    listed.write_text("- train\n- lr\n")  # was a TypeError from dict.pop
    flat.write_text("train: 5\n")  # was loaded, then failed inside the trainer
    with pytest.raises(RecipeError, match=r"list.yaml: a recipe is a YAML mapping of sections .*not a list"):
        load_recipe(str(listed))
    with pytest.raises(RecipeError, match=r"flat.yaml: recipe key 'train' is a section of keys, not 5"):
        load_recipe(str(flat))


def test_override_inside_a_free_form_section_keeps_its_other_keys():
    """data.options.gene_description=true used to replace kegg's whole options: its holdout went (validation
    items trained on) and compact_genes with it (a 1,411-token example refused at max_length 768)."""
    kept = load_recipe("kegg")["data"]["options"]
    r = load_recipe("kegg", ["data.options.gene_description=true", "data.options.holdout.seed=3",
                             "grpo.rewards.format=0.1"])
    assert r["data"]["options"] == {**kept, "gene_description": True, "holdout": {**kept["holdout"], "seed": 3}}
    assert r["grpo"]["rewards"] == {"correctness": 2.0, "format": 0.1}
    assert load_recipe("kegg", ["data.options={compact_genes: false}"])["data"]["options"] == {
        "compact_genes": False}  # naming the section itself still replaces it


@pytest.mark.parametrize("override, says", [
    ("train.max_steps=abc", r"train.max_steps='abc': it takes a whole number >= 1"),
    ("train.max_steps=-3", r"train.max_steps=-3: it takes a whole number >= 1"),  # ran 0 steps and saved
    ("train.lr=-1", r"train.lr=-1: it takes a number > 0"),
    ("train.batch_size=0", r"train.batch_size=0"), ("train.grad_accum=0", r"train.grad_accum=0"),
    ("train.scheduler=foo", r"train.scheduler='foo': it takes one of linear, cosine"),
    ("train.mixed_precision=fp8", r"it takes one of no, bf16, fp16"),
    ("data.empty_think_fraction=1.5", r"a number >= 0 and <= 1"),
    ("model.lora.r=0", r"model.lora.r=0: it takes a whole number >= 1"),
    ("model.lora=5", r"model.lora=5: give a mapping"),
    ("model.lora.target_modules=[]", r"give a list of module names"),
    ("grpo.num_generations=1", r"grpo.num_generations=1: it takes a whole number >= 2"),
    ("grpo.top_p=0", r"grpo.top_p=0: it takes a number > 0 and <= 1"),
    ("train=5", r"recipe key 'train' is a section of keys, not 5; give its keys under it"),
    ("data.options=[a]", r"recipe key 'data.options' is a section of keys, not \['a'\]"),
    ("grpo.rewards=null", r"grpo.rewards=None: give reward names with weights"),  # a TypeError at the first GRPO step
    ("grpo.rewards.nope=1", r"grpo.rewards: unknown reward 'nope'; registered rewards: conciseness, correctness"),
    ("grpo.rewards={correctness: 0}", r"every weight is 0"),
])
def test_bad_recipe_values_are_refused_by_name_before_any_work(override, says, tmp_path, capsys):
    from bioreason.app.cli import main
    from bioreason.errors import RecipeError

    with pytest.raises(RecipeError, match=says):
        load_recipe("tiny", [override])
    assert main(["train", "sft", "--recipe", "tiny", override, f"train.output_dir={tmp_path / 'r'}"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and re.search(says, err) and not (tmp_path / "r").exists()


def test_a_missing_init_folder_is_named_as_the_recipe_key(tmp_path):
    from bioreason.errors import RecipeError
    from bioreason.trainer import load_for_training

    with pytest.raises(RecipeError, match=r"model.init='.*nowhere' \(grpo.init for the GRPO stage\) does not exist"):
        load_for_training(load_recipe("tiny", [f"model.init={tmp_path / 'nowhere'}"]))


def test_overriding_a_null_section_starts_from_its_defaults_and_bad_lora_targets_are_named():
    from bioreason.errors import RecipeError
    from bioreason.modeling import apply_lora
    from bioreason.tiny import build_tiny

    r = load_recipe("tiny", ["model.lora.r=4"])  # tiny has lora: null; this used to leave {r: 4} (KeyError alpha)
    assert r["model"]["lora"] == {"r": 4, "alpha": 32, "dropout": 0.05,
                                  "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}
    with pytest.raises(RecipeError, match=r"target_modules=\['nothing'\]: no module of the LLM has that name; "
                                          r"its linear layers are .*q_proj"):
        apply_lora(build_tiny()[0], r=4, target_modules=["nothing"])


def test_recipe_file_override_and_output_dir_mistakes_are_named(tmp_path, capsys):
    """A recipe indented with tabs, an override without '=', and a train.output_dir that cannot be written: each an
    error that says what to do, before any model loads (the last was 'No such file or directory (/proc/x)')."""
    from bioreason.app.cli import main

    tabs = tmp_path / "tabs.yaml"
    tabs.write_text("model:\n\tinit: tiny\n")
    afile = tmp_path / "afile"
    afile.write_text("")
    cases = [(["--recipe", str(tabs)], "not valid YAML (YAML indents with spaces, not tabs)"),
             (["--recipe", "tiny", "train.lr"], "train.lr: a recipe override is KEY=VALUE, e.g. train.lr=1e-4"),
             (["--recipe", "tiny", f"train.output_dir={afile / 'run'}"],
              f"train.output_dir {afile / 'run'}: cannot write there (Not a directory)")]
    for argv, says in cases:
        try:
            rc = main(["train", "sft", *argv])
        except SystemExit as stop:  # argparse's usage errors
            rc = stop.code
        err = capsys.readouterr().err
        assert rc == 2 and says in err and "Traceback" not in err, (argv, err)


def test_grpo_prompts_ambiguous_keeps_the_questions_with_several_answers():
    """``grpo.prompts=ambiguous``: only records whose question has more than one answer among the training records
    (counted there, not across a holdout); ``all`` keeps every record; anything else, or no such question, is a
    RecipeError naming the fix."""
    from bioreason.errors import RecipeError
    from bioreason.kegg_data.examples import Example
    from bioreason.training.grpo import prompt_records

    def ex(group, label):
        return Example(question=f"{group}?", dna=[], answer=label, meta={"group": group, "label": label})

    records = [ex("PRNP", "prion disease"), ex("PRNP", "creutzfeldt-jakob disease"), ex("PRNP", "prion disease"),
               ex("KRAS", "colorectal cancer"), ex("KRAS", "colorectal cancer"), ex("PINK1", "parkinson s disease")]
    assert prompt_records(records, "all") == records
    assert prompt_records(records, "ambiguous") == records[:3]
    with pytest.raises(RecipeError, match="choose all or ambiguous"):
        prompt_records(records, "hard")
    with pytest.raises(RecipeError, match="use grpo.prompts=all"):
        prompt_records(records[3:], "ambiguous")
