# A GQA question on a real photo, as ViperGPT's code model would write it.
def execute_command(image) -> str:
    image_patch = ImagePatch(image)
    people = image_patch.find("man")
    if len(people) == 0:
        return image_patch.simple_query("What is this?")
    people.sort(key=lambda p: p.horizontal_center)
    return people[0].simple_query("What color is it?")
