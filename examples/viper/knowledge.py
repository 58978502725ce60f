# A question of world knowledge about what is in the image, as ViperGPT's
# OK-VQA prompt writes it: the image says which shape, the language model
# (llm_query, the endpoint of VPD_LLM_BASE_URL) says the rest.
def execute_command(image) -> str:
    image_patch = ImagePatch(image)
    shapes = image_patch.find("diamond")
    if len(shapes) == 0:
        return "no diamond"
    color = shapes[0].simple_query("What color is the diamond?")
    return llm_query(f"Which fruit is usually {color}?", long_answer=False)
